"""DotProductBias: the network only does the maths (fastai's `EmbeddingDotBias`).

    rating(u, i) = sigmoid(p_u . q_i + b_u + b_i + b) * (hi - lo) + lo

The sigmoid keeps every prediction inside the rating range (Howard & Gugger, "Deep Learning
for Coders", ch. 8). The global bias `b` is an addition to fastai's model: it starts at the
logit of the mean rating, so user and item biases learn deviations from the mean instead of
first spending epochs on finding it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from recsys.data.genres import Genres


class DotProductBias(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        y_range: tuple[float, float],
        *,
        mean_rating: float | None = None,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        lo, hi = y_range
        if not lo < hi:
            raise ValueError(f"y_range must be increasing, got {y_range}")
        self.y_range = (float(lo), float(hi))
        self.user_factors = nn.Parameter(torch.empty(n_users, n_factors))
        self.item_factors = nn.Parameter(torch.empty(n_items, n_factors))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        mean = (lo + hi) / 2 if mean_rating is None else mean_rating
        frac = min(max((mean - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        self.global_bias = nn.Parameter(torch.tensor(math.log(frac / (1 - frac))))
        with torch.no_grad():
            self.user_factors.normal_(0.0, init_std, generator=generator)
            self.item_factors.normal_(0.0, init_std, generator=generator)

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_factors[users] * self.item_factors[items]).sum(-1)
        return dot + self.user_bias[users] + self.item_bias[items] + self.global_bias

    def squash(self, logits: torch.Tensor) -> torch.Tensor:
        lo, hi = self.y_range
        return torch.sigmoid(logits) * (hi - lo) + lo

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.squash(self.logits(users, items))


_DENSE_GENRES_MAX = 1 << 24
"""Largest items x genres matrix kept dense (64 MB of float32)."""


class ChoiceNet(nn.Module):
    """The ranking head: which items a user chooses, in the same family of embedding dot
    products with biases.

        score(u, i) = p_u . q_i + c_i,   p_u = e_u + |N(u)|^-a * sum_{j in N(u)} w_j y_j
                                         q_i = v_i + mean_{g in G(i)} h_g

    A user's vector is a free embedding `e_u` plus the normalised sum of the input
    embeddings of what they rated (N(u), weighted by how they rated it): Paterek's NSVD and
    Koren's SVD++ (2008). The sum is what lets a visitor known by three ratings be placed
    exactly as training placed every user, without a solve. Trained with a softmax over the
    whole catalog (the multinomial likelihood of Liang et al. 2018, "Variational
    autoencoders for collaborative filtering"), so every unobserved item is a negative.

    An item's output vector adds the mean of its genres' embeddings h_g (side information,
    as in LightFM), so films of a genre share a direction: a visitor's vector fitted to three
    horror films points at horror, not at whatever else those films' audiences watched.
    Only the output side: genres on the input side too made known users' lists worse
    (validation NDCG@10 0.187 against 0.192; benchmarks/README.md).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        *,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
        genres: Genres | None = None,
    ) -> None:
        super().__init__()
        # The items x genres matrix, each row averaging its genres. Dense while it is small
        # (MovieLens: 9k x 20), where a dense product is 3x quicker than a sparse one; else
        # sparse, as (2, nnz) (item row, genre) pairs and nnz weights.
        self.genre_matrix: torch.Tensor | None
        self.genre_pairs: torch.Tensor | None
        self.genre_weights: torch.Tensor | None
        matrix = pairs = weights = None
        n_genres = 0
        if genres is not None and genres.n_genres:
            n_genres = genres.n_genres
            counts = np.diff(genres.indptr)
            rows = np.repeat(np.arange(n_items), counts)
            shares = (1.0 / counts[rows]).astype(np.float32)
            if n_items * n_genres <= _DENSE_GENRES_MAX:
                matrix = torch.zeros(n_items, n_genres)
                matrix[rows, genres.index] = torch.from_numpy(shares)
            else:
                pairs = torch.from_numpy(np.stack([rows, genres.index]))
                weights = torch.from_numpy(shares)
        self.members = 1
        """How many trained heads this one averages (`mean_of`)."""
        self.register_buffer("genre_matrix", matrix)
        self.register_buffer("genre_pairs", pairs)
        self.register_buffer("genre_weights", weights)
        self.genre_out = nn.Parameter(torch.zeros(n_genres, n_factors))
        self.user_offset = nn.Parameter(torch.zeros(n_users, n_factors))
        self.item_in = nn.Parameter(torch.empty(n_items, n_factors))
        self.item_out = nn.Parameter(torch.empty(n_items, n_factors))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        with torch.no_grad():
            self.item_in.normal_(0.0, init_std, generator=generator)
            self.item_out.normal_(0.0, init_std, generator=generator)

    def user_vectors(
        self,
        own: torch.Tensor,
        history: torch.Tensor,
        offsets: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """p_u for a batch: `own` the users' free offsets (their rows of `user_offset`),
        `history[offsets[b]:offsets[b+1]]` the items of user b, `weights` their input weights
        already scaled by |N(u)| ** -exponent."""
        summed = nn.functional.embedding_bag(
            history, self.item_in, offsets, mode="sum", per_sample_weights=weights
        )
        return own + summed

    def outputs(self) -> torch.Tensor:
        """q_i of every item: its own output embedding plus its genres'."""
        if self.genre_matrix is not None:
            return torch.addmm(self.item_out, self.genre_matrix, self.genre_out)
        if self.genre_pairs is None or self.genre_weights is None:
            return self.item_out
        matrix = torch.sparse_coo_tensor(
            self.genre_pairs,
            self.genre_weights,
            (self.item_out.shape[0], self.genre_out.shape[0]),
            is_coalesced=True,  # sorted by item, then genre, without repeats
            check_invariants=False,  # built here, valid by construction
        )
        by_genre: torch.Tensor = torch.sparse.mm(matrix, self.genre_out)
        return self.item_out + by_genre

    def outputs_of(self, items: torch.Tensor) -> torch.Tensor:
        """q_i of the given items only (rows x factors): what a sampled softmax needs."""
        own = self.item_out[items]
        if self.genre_matrix is not None:
            return own + self.genre_matrix[items] @ self.genre_out
        if self.genre_pairs is None:
            return own
        return self.outputs()[items]

    @classmethod
    def mean_of(cls, members: list[ChoiceNet]) -> ChoiceNet:
        """One network whose scores are the mean of the members' (an ensemble, exactly): the
        members' vectors side by side, the user side (offsets and input embeddings) divided
        by their number, so p = [p_1, ..., p_m] / m and q = [q_1, ..., q_m] give
        p.q = mean of p_j.q_j; the item bias is the members' mean."""
        if len(members) == 1:
            return members[0]
        first, m = members[0], len(members)
        n_users, n_items = first.user_offset.shape[0], first.item_in.shape[0]
        width = sum(net.item_in.shape[1] for net in members)
        net = cls(n_users, n_items, width)
        net.members = sum(n.members for n in members)
        for name in ("genre_matrix", "genre_pairs", "genre_weights"):
            setattr(net, name, getattr(first, name))
        with torch.no_grad():
            net.user_offset.copy_(torch.cat([n.user_offset for n in members], 1) / m)
            net.item_in.copy_(torch.cat([n.item_in for n in members], 1) / m)
            net.item_out.copy_(torch.cat([n.item_out for n in members], 1))
            net.genre_out = nn.Parameter(torch.cat([n.genre_out for n in members], 1))
            net.item_bias.copy_(torch.stack([n.item_bias for n in members]).mean(0))
        return net

    def item_side(self) -> list[nn.Parameter]:
        """Every parameter but the users' offsets: what all users' losses share."""
        return [self.item_in, self.item_out, self.item_bias, self.genre_out]

    def penalised_tables(self) -> list[nn.Parameter]:
        """The item and genre embeddings, which training holds to zero by an L2 penalty."""
        return [self.item_in, self.item_out, self.genre_out]

    def forward(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user vector (batch x items)."""
        return torch.addmm(self.item_bias, user_vectors, self.outputs().T)
