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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recsys.model.network import ChoiceNet


@dataclass(frozen=True, eq=False)
class RankingHead:
    user_vectors: np.ndarray
    """p_u of every user row, offset and rated items included (zero for untrained users)."""
    item_in: np.ndarray
    """Input embeddings y_j: what a rated item adds to a trained user's vector. Serving no
    longer reads them (the fold-in starts at the typical user); artifacts keep them so that
    users' vectors can be rebuilt from their ratings."""
    item_out: np.ndarray
    item_bias: np.ndarray
    blend: float
    liked_threshold: float
    disliked_input: float
    history_exponent: float = 0.5
    """A user's vector sums their items' input embeddings times |N(u)| ** -exponent."""
    members: int = 1
    """How many trained heads the arrays average (`ChoiceNet.mean_of`): fold-in's L2 is per
    head (see `fold_in`)."""
    genre_out: np.ndarray | None = None
    """The genre embeddings h_g that `item_out` includes (q_i = v_i + mean of its genres'
    h_g), a row per genre of the model's `GenrePrior`; None without genres. What the vector
    of an item added after training starts from (`recsys.model.new_items`)."""

    def __post_init__(self) -> None:
        n_items = len(self.item_out)
        if self.item_in.shape != self.item_out.shape or self.item_bias.shape != (n_items,):
            raise ValueError("ranking item arrays do not agree in shape")
        if self.user_vectors.shape[1] != self.item_out.shape[1]:
            raise ValueError("ranking user and item vectors differ in length")
        if self.genre_out is not None and self.genre_out.shape[1] != self.item_out.shape[1]:
            raise ValueError("ranking genre and item vectors differ in length")

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
        members: int = 1,
    ) -> RankingHead:
        """Arrays of `net`, with each user's vector computed from the (users, items, ratings)
        it was trained on."""
        import torch  # training only: serving loads the arrays and never imports torch

        with torch.no_grad():
            item_in = net.item_in.detach().cpu().float().numpy().copy()
            offsets = net.user_offset.detach().cpu().float().numpy()
            genre_out = net.genre_out.detach().cpu().float().numpy().copy()
        head = cls(
            np.zeros_like(offsets),
            item_in,
            net.outputs().detach().cpu().float().numpy().copy(),
            net.item_bias.detach().cpu().float().numpy().copy(),
            float(blend),
            float(liked_threshold),
            float(disliked_input),
            float(history_exponent),
            int(members),
            genre_out if len(genre_out) else None,
        )
        counts = np.bincount(users, minlength=len(offsets))
        scale = np.maximum(counts, 1).astype(np.float64) ** -head.history_exponent
        vectors = torch.from_numpy(offsets.copy())
        # A million ratings at a time, weights included: their item vectors take 256 MB, not
        # 6 GB at 25M, and float64 weights of every rating another 0.5 GB.
        step = 1 << 20
        for s in range(0, len(users), step):
            chunk = np.asarray(users[s : s + step], dtype=np.int64)
            weights = head.input_weights(ratings[s : s + step]) * scale[chunk]
            part = torch.from_numpy(item_in[items[s : s + step]])
            part *= torch.from_numpy(weights.astype(np.float32)).unsqueeze(1)
            vectors.index_add_(0, torch.from_numpy(chunk), part)
        object.__setattr__(head, "user_vectors", vectors.numpy())
        return head

    @property
    def n_factors(self) -> int:
        return int(self.item_out.shape[1])

    def input_weights(self, ratings: np.ndarray) -> np.ndarray:
        """How much each rated item adds to a user's vector: 1 when liked."""
        ratings = np.asarray(ratings, dtype=np.float64)
        return np.where(ratings >= self.liked_threshold, 1.0, self.disliked_input)

    FOLD_IN_NEWTON_STEPS = 3
    FOLD_IN_L2 = 0.2
    """The pull of the typical user on a visitor's vector, against the summed NLL of the films
    they liked. Chosen on one draw of held-out MovieLens visitors (`benchmarks/visitors.py
    --seed 1`) as the largest that still gives the horror and the Pixar visitors of issue 16
    at least 6 films of their genre: NDCG@10 0.448 given 3 liked films and 0.458 given 10
    random ratings (most-popular 0.412 and 0.402, EASE 0.346 and 0.405); 0.1 gave 0.388 and
    0.414, 0.3 0.469 and 0.489 with 5 films of each genre."""

    @property
    def fold_in_l2(self) -> float:
        """The fold-in's L2 on the visitor's vector. The mean of m heads scores
        v = [v_1, ..., v_m] / m, so the same L2 on each head's v_j is m times the L2 on v."""
        return self.FOLD_IN_L2 * self.members

    def fold_in(
        self,
        item_rows: np.ndarray,
        ratings: np.ndarray,
        candidates: np.ndarray,
        *,
        prior: np.ndarray,
        learned_targets: int = 0,
    ) -> np.ndarray:
        """The vector of a visitor who rated these items: the most probable one given the
        items they liked, by the head's softmax over `candidates` (the items their list may
        hold), under a Gaussian prior centred on `prior`, the typical user's vector (what a
        visitor with no ratings is ranked as, `Ranker.cold_start`); item embeddings
        frozen. The likelihood is summed over the liked items, so each film the visitor
        liked weighs against the prior: three say a little, thirty say a lot.

        Why a prior at the typical user: centred on zero, a visitor known by three films was
        pulled towards the ranking of the item biases alone (which put Powder beside
        Shawshank), and their lists fell below most-popular's (NDCG@10 0.371 against 0.412
        on held-out visitors given 3 liked films; 0.448 now). Items share their genres'
        vectors (`ChoiceNet`), so three horror films still pull the visitor towards horror.
        Items rated below the liked threshold are no targets here: the rating head's fold-in
        counts them against their neighbours.

        A known user's new feedback (`learned_targets` > 0, the liked films the model learned
        them from) starts from their learned vector as `prior`, which then stands for those
        films: to the prior's L2 it adds the curvature of that many targets' NLL at the
        prior (a Laplace approximation of what they were learned from), so five new films
        move a user who had three a long way and one who had four hundred a little. With no
        new liked film, a known user's vector stays their learned one.

        Newton's method from the prior: the objective is strongly convex in the vector (the
        prior's L2). Three steps are taken: on 200 random MovieLens visitors of 1-19 ratings
        the vector was within 1e-5 (relative, median) of its optimum after three and 4e-3
        after two. The item products run in float32 (the BLAS's fast path; the small system
        is solved in float64): three steps over MovieLens' 2,245 candidates took ~1.1 ms.
        """
        center = prior.astype(np.float64)
        if len(item_rows) == 0:
            return prior.astype(np.float32)
        ratings = np.asarray(ratings, dtype=np.float64)
        weights = np.where(ratings >= self.liked_threshold, 1.0, 0.0)
        if not weights.any():
            if learned_targets:
                return prior.astype(np.float32)
            weights[:] = 1.0
        target = (weights / weights.sum()) @ self.item_out[item_rows].astype(np.float64)
        out, bias = self.item_out[candidates], self.item_bias[candidates]
        # The summed NLL divided by the number of targets: the mean NLL, with the prior's
        # L2 shrinking as the visitor's films add up.
        l2 = self.fold_in_l2 / weights.sum()
        ridge = 2 * l2 * np.eye(self.n_factors)
        vector = center.copy()
        anchor: np.ndarray | None = None
        for _ in range(self.FOLD_IN_NEWTON_STEPS):
            logits = out @ vector.astype(np.float32) + bias
            p = np.exp(logits - logits.max())
            p /= p.sum()
            mean = (p @ out).astype(np.float64)
            # Gradient and Hessian of the mean NLL of the targets plus L2 (the Hessian is
            # the covariance of the item vectors under the softmax: W'W with W = out sqrt(p)).
            weighted = out * np.sqrt(p)[:, None]
            covariance = (weighted.T @ weighted).astype(np.float64) - np.outer(mean, mean)
            if anchor is None:  # the first step is at the prior: its curvature, per target
                anchor = covariance * (learned_targets / weights.sum())
            gradient = mean - target + 2 * l2 * (vector - center) + anchor @ (vector - center)
            vector -= np.linalg.solve(covariance + ridge + anchor, gradient)
        fitted: np.ndarray = vector.astype(np.float32)
        return fitted
