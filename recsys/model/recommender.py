"""Recommender: a trained model as a value: the learned tensors with the vocabularies and the
training exposure they need (which items each user already rated, how often each item was
rated), and the maths on them: predicted ratings, ranking vectors, fold-in of a visitor.

Lists are made from it by `recsys.lists.ranker.Ranker`, nearest items by
`recsys.model.similar.SimilarItems`; it holds no caches, so every list-maker shares it.

Unknown ids never raise here: predictions fall back to the biases that are known, then to the
global mean (Koren, Bell & Volinsky 2009, "baseline predictors").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from recsys.data.vocab import UNKNOWN, Vocabulary
from recsys.model.card import ModelCard
from recsys.model.genre_prior import GenrePrior
from recsys.model.ranking import RankingHead
from recsys.train_config import TrainConfig

if TYPE_CHECKING:
    import torch

    from recsys.data.interactions import Interactions
    from recsys.model.network import DotProductBias


LIKED_THRESHOLD: float = TrainConfig.model_fields["liked_threshold"].default
"""The liked threshold of a model whose card records no settings (one made by hand)."""
FACTOR_L2: float = TrainConfig.model_fields["factor_l2"].default
"""The factors' L2 of a model whose card records no settings."""


def _array(weights: torch.Tensor) -> np.ndarray:
    """A trained parameter as a float32 numpy array of its own."""
    copied: np.ndarray = weights.detach().cpu().float().numpy().copy()
    return copied


@dataclass
class Recommender:
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_bias: float
    y_range: tuple[float, float]
    user_vocab: Vocabulary
    item_vocab: Vocabulary
    user_counts: np.ndarray
    """Training ratings per user row."""
    item_counts: np.ndarray
    """Training ratings per item row: popularity, and 0 marks a row that was never trained."""
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    card: ModelCard = field(default_factory=ModelCard)  # how, on what, with what results
    ranking: RankingHead | None = None
    """The ranking head; without one (older artifacts), lists rank by predicted rating."""
    seen_liked: np.ndarray | None = None
    """A bit per entry of `seen_items` (np.packbits): the user rated it at or above the liked
    threshold. What a list's reasons name (`recsys.lists.because`); None in older artifacts,
    whose lists then name none."""
    genre_prior: GenrePrior | None = None
    """What the model knows of an item from its genres: the vectors of items added after
    training (`recsys.model.new_items`); None without genres, or in older artifacts."""
    new_items: int = 0
    """The last rows of the item vocabulary that were added after training, their vectors
    from `genre_prior`: listed, predicted and found similar like trained items, never trusted
    as what the model learned (no support, no bias ranking)."""

    def __post_init__(self) -> None:
        n_users, n_items = len(self.user_vocab), len(self.item_vocab)
        if self.user_factors.shape[0] != n_users or self.user_bias.shape != (n_users,):
            raise ValueError("user tensors do not match the user vocabulary")
        if self.item_factors.shape[0] != n_items or self.item_bias.shape != (n_items,):
            raise ValueError("item tensors do not match the item vocabulary")
        if (
            len(self.seen_indptr) != n_users + 1
            or len(self.item_counts) != n_items
            or len(self.user_counts) != n_users
        ):
            raise ValueError("exposure arrays do not match the vocabularies")
        if self.seen_liked is not None and len(self.seen_liked) != -(-len(self.seen_items) // 8):
            raise ValueError("the liked bits do not match the seen items")
        # Rows that the split left without training data hold their random initial values:
        # they must neither be recommended nor trusted for predictions. Rows added after
        # training have vectors from their genres, and are used.
        self.is_new = np.zeros(n_items, dtype=bool)
        self.is_new[n_items - self.new_items :] = self.new_items > 0
        self._usable_items = (self.item_counts > 0) | self.is_new
        self._untrained_items = np.flatnonzero(~self._usable_items)
        self._trained_users = self.user_counts > 0
        # Unit item vectors, computed once: nearest-item queries become one matrix product.
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        self.unit_items = self.item_factors / np.maximum(norms, 1e-12)
        scale = self.card.rating_scale
        # The sigmoid's range is the scale widened (RatingScale.output_range); what we tell a
        # client stays on the scale.
        span = (self.y_range[1] - self.y_range[0]) / 1.2
        self.scale = (
            (scale.min, scale.max)
            if scale
            else (self.y_range[0] + 0.1 * span, self.y_range[1] - 0.1 * span)
        )
        if self.ranking is not None and self.ranking.item_out.shape[0] != n_items:
            raise ValueError("ranking head does not match the item vocabulary")
        self._lay_out_ranking()

    def _lay_out_ranking(self) -> None:
        """The ranking score as one dot product: items [q_i, blend f_i] + (c_i + blend b_i),
        users [p_u, r_u] + blend (b_u + b); without a ranking head, the rating logit."""
        head = self.ranking
        self.blend = head.blend if head is not None else 1.0
        # With a blend of 0 the rating half adds nothing to the score: it is left out of the
        # product, which halves the work of scoring a first visit.
        self._with_rating = head is None or head.blend != 0
        if head is not None:
            items = [head.item_out]
            if self._with_rating:
                items.append(head.blend * self.item_factors)
            # Fortran order: a column per item is contiguous, as CandidateSet scores them.
            self.rank_items = np.asfortranarray(np.hstack(items))
            self.rank_bias = (head.item_bias + head.blend * self.item_bias).astype(np.float32)
        else:
            self.rank_items, self.rank_bias = self.item_factors, self.item_bias
        # Whom a stranger is ranked as: the mean of the learned users' ranking vectors. A zero
        # vector ranked by the item biases alone, which put Powder and Elizabeth beside
        # Shawshank on MovieLens; the typical user gets the films most people chose and liked.
        trained = (self.user_counts > 0).astype(np.float32)
        n_trained = max(1.0, float(trained.sum()))
        # The choice head's half alone is the prior of a visitor's fold-in (RankingHead.fold_in).
        self.typical_choice: np.ndarray = (
            np.zeros(0, dtype=np.float32)
            if head is None
            else trained @ head.user_vectors / n_trained
        )
        self.typical_user = self.ranked_as(
            None if head is None else self.typical_choice, trained @ self.user_factors / n_trained
        )

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_network(
        cls,
        net: DotProductBias,
        train: Interactions,
        card: ModelCard | None = None,
        *,
        seen: Interactions | None = None,
        ranking: RankingHead | None = None,
    ) -> Recommender:
        """`train` is what the network learned from (item counts, trained rows); `seen` (default
        `train`) is every rating a user made, which recommendations must not repeat."""
        from recsys.data.interactions import is_sorted  # training only: it loads pandas

        seen = train if seen is None else seen
        keys = seen.users.astype(np.int64) << 32 | seen.items
        # Snapshots arrive sorted by (user, item); sorting again would double peak memory.
        order = slice(None) if is_sorted(keys) else np.lexsort((seen.items, seen.users))
        del keys
        indptr = np.zeros(seen.n_users + 1, dtype=np.int64)
        np.cumsum(seen.user_counts(), out=indptr[1:])
        card = card or ModelCard()
        threshold = card.config.liked_threshold if card.config is not None else LIKED_THRESHOLD
        item_factors, item_bias = _array(net.item_factors), _array(net.item_bias)
        item_counts = train.item_counts().astype(np.int64)
        return cls(
            user_factors=_array(net.user_factors),
            item_factors=item_factors,
            user_bias=_array(net.user_bias),
            item_bias=item_bias,
            global_bias=float(net.global_bias.detach()),
            y_range=net.y_range,
            user_vocab=train.user_vocab,
            item_vocab=train.item_vocab,
            user_counts=train.user_counts().astype(np.int64),
            item_counts=item_counts,
            seen_indptr=indptr,
            seen_items=seen.items[order].astype(np.int32),
            card=card,
            ranking=ranking,
            seen_liked=np.packbits(seen.ratings[order] >= threshold),
            genre_prior=GenrePrior.fit(train.genres, item_counts, item_factors, item_bias, ranking),
        )

    def __repr__(self) -> str:
        return (
            f"<Recommender {self.card.version or 'unsaved'}: {len(self.user_vocab):,} users,"
            f" {len(self.item_vocab):,} items, {self.n_factors} factors>"
        )

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    def seen(self, user_row: int) -> np.ndarray:
        return self.seen_items[self.seen_indptr[user_row] : self.seen_indptr[user_row + 1]]

    @property
    def factor_l2(self) -> float:
        """The L2 on the factors the model was trained with (`TrainConfig.factor_l2`)."""
        config = self.card.config
        return config.factor_l2 if config is not None else FACTOR_L2

    @cached_property
    def mean_square_factor(self) -> float:
        """The mean squared item factor over trained items: the diagonal of E[q q'], the
        weight of one learned rating in a live user's fold-in prior (`fold_in`)."""
        trained = self.item_factors[self.item_counts > 0]
        return float(np.mean(np.square(trained, dtype=np.float64))) if len(trained) else 0.0

    @cached_property
    def reason_vectors(self) -> np.ndarray:
        """Item vectors whose dot product is the mean of two cosines: of the rating head's
        item factors (rated alike) and of the ranking head's item vectors (chosen by the same
        users); the rating head's alone without a ranking head. A list's reasons name the
        liked items nearest an item by it (`recsys.lists.because`): by the rating factors
        alone, a user with 400 liked films got Night of the Living Dead "because" of We
        Bought a Zoo; by the ranking vectors alone, The Silence of the Lambs was near none of
        a horror fan's three films."""
        if self.ranking is None:
            alone: np.ndarray = self.unit_items
            return alone
        out = self.ranking.item_out
        unit = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        # float32 throughout: a float64 scalar would make the whole table float64.
        both: np.ndarray = (np.hstack([self.unit_items, unit]) / np.sqrt(2)).astype(np.float32)
        return both

    def liked(self, user_row: int) -> np.ndarray:
        """The item rows the user rated at or above the liked threshold in the ratings the
        model saw (none in older artifacts, which do not record it)."""
        if self.seen_liked is None:
            return np.empty(0, dtype=np.int32)
        lo, hi = int(self.seen_indptr[user_row]), int(self.seen_indptr[user_row + 1])
        bits = np.unpackbits(self.seen_liked[lo // 8 : -(-hi // 8)])[lo % 8 : lo % 8 + hi - lo]
        rows: np.ndarray = self.seen_items[lo:hi][bits.astype(bool)]
        return rows

    @property
    def liked_threshold(self) -> float:
        """The rating at and above which a rating counts as liked: the training's."""
        config = self.card.config
        return config.liked_threshold if config is not None else LIKED_THRESHOLD

    # --- predictions ------------------------------------------------------------------------

    name = "model"

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings for vocabulary rows; -1 (unknown) falls back to known biases."""
        # In chunks: gathering factor rows for millions of pairs at once (an evaluation
        # holdout) would take gigabytes.
        step = 1 << 18
        parts = [
            self._predict_chunk(users[s : s + step], items[s : s + step])
            for s in range(0, len(users), step)
        ]
        return np.concatenate(parts) if parts else np.empty(0)

    def _predict_chunk(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        users = np.where((users >= 0) & self._trained_users[np.maximum(users, 0)], users, UNKNOWN)
        items = np.where((items >= 0) & self._usable_items[np.maximum(items, 0)], items, UNKNOWN)
        known_user, known_item = users >= 0, items >= 0
        uc, ic = np.maximum(users, 0), np.maximum(items, 0)
        logits = np.full(users.shape, self.global_bias, dtype=np.float32)
        logits += np.where(known_user, self.user_bias[uc], 0.0)
        logits += np.where(known_item, self.item_bias[ic], 0.0)
        dots = np.einsum("ij,ij->i", self.user_factors[uc], self.item_factors[ic])
        logits += np.where(known_user & known_item, dots, 0.0)
        return self.to_ratings(logits)

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """Predicted ratings for (user, item) pairs of external ids, with fallbacks."""
        return self.predict_rows(
            self.user_vocab.indices(user_ids), self.item_vocab.indices(item_ids)
        )

    def is_known_user(self, user_id: str) -> bool:
        row = self.user_vocab.index(user_id)
        return row != UNKNOWN and bool(self._trained_users[row])

    def is_known_item(self, item_id: str) -> bool:
        row = self.item_vocab.index(item_id)
        return row != UNKNOWN and bool(self._usable_items[row])

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        """Ranking scores of every item for a batch of user rows (the order lists follow), as
        evaluation takes them; serving ranks with numpy alone (`rank_users`)."""
        import torch  # evaluation only: the service never imports torch (RSS of a worker)

        rows = np.asarray(users, dtype=np.int64)
        scores = self.rank_users(rows) @ self.rank_items.T + self.rank_bias
        scores[:, self._untrained_items] = -np.inf
        return torch.from_numpy(scores)

    def rank_users(self, rows: np.ndarray) -> np.ndarray:
        """Users' halves of the ranking dot product (see __post_init__)."""
        choice = None if self.ranking is None else self.ranking.user_vectors[rows]
        return self.ranked_as(choice, self.user_factors[rows])

    def rank_user(self, row: int) -> np.ndarray:
        """One user's half, from views of the tables: gathering by an index array made copies
        (3 us of the ~95 us of a first visit)."""
        choice = None if self.ranking is None else self.ranking.user_vectors[row]
        return self.ranked_as(choice, self.user_factors[row])

    def ranked_as(self, choice: np.ndarray | None, rating: np.ndarray) -> np.ndarray:
        """The user's half of the ranking product from their vectors (or rows of them) in the
        choice head (None without one) and the rating head."""
        if choice is None:
            return rating
        if not self._with_rating:
            return choice
        joined: np.ndarray = np.concatenate([choice, rating], axis=-1)
        return joined

    def rank_offset(self, user_bias: float) -> float:
        return self.blend * (user_bias + self.global_bias)

    def eligible(self, min_support: int) -> np.ndarray:
        """Items with at least `min_support` training ratings (never an untrained row), and
        the items added after training (their vectors come from their genres, not from few
        ratings)."""
        eligible: np.ndarray = (self.item_counts >= max(1, min_support)) | self.is_new
        return eligible

    def known_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Item rows of the ids in the vocabulary; unknown ids are left out."""
        rows = self.item_vocab.indices(item_ids)
        known: np.ndarray = rows[rows != UNKNOWN]
        return known

    def _squash(self, logits: np.ndarray) -> np.ndarray:
        """Logits to the network's scaled sigmoid (float64)."""
        lo, hi = self.y_range
        return lo + (hi - lo) / (1.0 + np.exp(-logits.astype(np.float64)))

    def to_ratings(self, logits: np.ndarray) -> np.ndarray:
        """Rating logits to predicted ratings on the rating scale: the sigmoid's range is
        wider than the scale, so that 5 stars can be reached; an answer never leaves it."""
        # The method, not np.clip: half the cost on the ten values of a list.
        clipped: np.ndarray = self._squash(logits).clip(*self.scale)
        return clipped

    def item_ratings(
        self, user_vector: np.ndarray, user_bias: float, rows: np.ndarray
    ) -> np.ndarray:
        """Predicted ratings of a few item rows for one user of the rating head."""
        one = self.items_ratings(user_vector[np.newaxis], np.array([user_bias]), rows[np.newaxis])
        ratings: np.ndarray = one[0]
        return ratings

    def items_ratings(
        self, user_vectors: np.ndarray, user_biases: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """Predicted ratings of item rows for several users of the rating head: row b of
        `items` for user vector and bias b. Products summed along the factors, not a matrix
        product: each sum is then the same however many users and items are rated together, so
        a ranking scored in a batch, alone or from the cache predicts the same ratings."""
        pairs = self.item_factors[items] * user_vectors[:, np.newaxis, :]
        logits = pairs.sum(axis=2) + self.item_bias[items]
        logits += (user_biases + self.global_bias)[:, np.newaxis]
        return self.to_ratings(logits)

    def trained_rows(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Item rows of the ids, and which of them the model learned (known and trained)."""
        rows = self.item_vocab.indices(item_ids)
        return rows, (rows != UNKNOWN) & self._usable_items[np.maximum(rows, 0)]
