"""The ranking head as the recommender holds it: numpy arrays of a trained `ChoiceNet`.

Lists are ordered by

    score(u, i) = choice(u, i) + blend * rating_logit(u, i)

the choice head's score (which items the user would choose) plus a share of the rating head's
logit (how they would rate it), `blend` chosen on validation NDCG. Both are dot products, so
the served score is one dot product of concatenated vectors: a user's [p_u, blend * r_u]
against an item's [q_i, blend * f_i], plus the item's combined bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.model.network import ChoiceNet


@dataclass(frozen=True, eq=False)
class RankingHead:
    user_vectors: np.ndarray
    """p_u of every user row, offset and rated items included (zero for untrained users)."""
    item_in: np.ndarray
    """Input embeddings y_j: what a rated item adds to a user's vector (for fold-in)."""
    item_out: np.ndarray
    item_bias: np.ndarray
    blend: float
    liked_threshold: float
    disliked_input: float
    history_exponent: float = 0.5
    """A user's vector sums their items' input embeddings times |N(u)| ** -exponent."""

    def __post_init__(self) -> None:
        n_items = len(self.item_out)
        if self.item_in.shape != self.item_out.shape or self.item_bias.shape != (n_items,):
            raise ValueError("ranking item arrays do not agree in shape")
        if self.user_vectors.shape[1] != self.item_out.shape[1]:
            raise ValueError("ranking user and item vectors differ in length")

    @classmethod
    def from_network(
        cls,
        net: ChoiceNet,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        *,
        blend: float,
        liked_threshold: float,
        disliked_input: float,
        history_exponent: float,
    ) -> RankingHead:
        """Arrays of `net`, with each user's vector computed from the (users, items, ratings)
        it was trained on."""
        with torch.no_grad():
            item_in = net.item_in.detach().cpu().float().numpy().copy()
            offsets = net.user_offset.detach().cpu().float().numpy()
        head = cls(
            np.zeros_like(offsets),
            item_in,
            net.item_out.detach().cpu().float().numpy().copy(),
            net.item_bias.detach().cpu().float().numpy().copy(),
            float(blend),
            float(liked_threshold),
            float(disliked_input),
            float(history_exponent),
        )
        counts = np.bincount(users, minlength=len(offsets))
        weights = (
            head.input_weights(ratings) * np.maximum(counts[users], 1) ** -head.history_exponent
        )
        vectors = torch.from_numpy(offsets.copy())
        step = 1 << 20  # a million rows of item vectors at a time: 256 MB, not 6 GB for 25M
        for s in range(0, len(users), step):
            rows = torch.from_numpy(np.asarray(users[s : s + step], dtype=np.int64))
            part = torch.from_numpy(item_in[items[s : s + step]])
            part *= torch.from_numpy(weights[s : s + step].astype(np.float32)).unsqueeze(1)
            vectors.index_add_(0, rows, part)
        object.__setattr__(head, "user_vectors", vectors.numpy())
        return head

    @property
    def n_factors(self) -> int:
        return int(self.item_out.shape[1])

    def input_weights(self, ratings: np.ndarray) -> np.ndarray:
        """How much each rated item adds to a user's vector: 1 when liked."""
        ratings = np.asarray(ratings, dtype=np.float64)
        return np.where(ratings >= self.liked_threshold, 1.0, self.disliked_input)

    FOLD_IN_STEPS = 50
    FOLD_IN_LR = 30.0
    FOLD_IN_L2 = 1e-3

    def fold_in(self, item_rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """The vector of a visitor who rated these items: the one that makes the items they
        liked most likely under the head's softmax (item embeddings frozen; a few gradient
        steps from the vector training would build, whose free offset a visitor lacks).

        The built vector alone is too short for three ratings to outweigh the item biases,
        so a visitor would get the popular list; fitting it as training fits the targets
        places them by their taste. Items rated below the liked threshold are no targets:
        the rating head's fold-in counts them against their neighbours. Step size and L2
        were chosen by the genre share of MovieLens visitors' lists (benchmarks/README.md).
        """
        if len(item_rows) == 0:
            return np.zeros(self.n_factors, dtype=np.float32)
        ratings = np.asarray(ratings, dtype=np.float64)
        weights = np.where(ratings >= self.liked_threshold, 1.0, 0.0)
        if not weights.any():
            weights[:] = 1.0
        target = (weights / weights.sum()) @ self.item_out[item_rows].astype(np.float64)
        start = self.input_weights(ratings) * len(item_rows) ** -self.history_exponent
        vector = start @ self.item_in[item_rows].astype(np.float64)
        for _ in range(self.FOLD_IN_STEPS):
            logits = self.item_out @ vector + self.item_bias
            p = np.exp(logits - logits.max())
            p /= p.sum()
            # Gradient of the mean NLL of the targets plus L2: E_p[q] - mean target q + 2 l2 v.
            vector -= self.FOLD_IN_LR * (p @ self.item_out - target + 2 * self.FOLD_IN_L2 * vector)
        fitted: np.ndarray = vector.astype(np.float32)
        return fitted
