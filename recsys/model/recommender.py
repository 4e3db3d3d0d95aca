"""Recommender: external ids in, ranked items and predicted ratings out.

It wraps the learned tensors with the vocabularies and the training exposure it needs
(which items each user already rated, how often each item was rated). The contract, shared
by every scorer here (implicit's `RecommenderBase` has the same shape):

    recommend(user_id, k) -> list[Scored]   best first, k or fewer, never items the user rated

Unknown ids never raise here: predictions fall back to the biases that are known, then to the
global mean (Koren, Bell & Volinsky 2009, "baseline predictors"); an unknown user gets the
cold-start list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from recsys.data.vocab import UNKNOWN, Vocabulary
from recsys.exploration import Exploring
from recsys.model.candidates import CandidateSet
from recsys.model.lru import LruCache
from recsys.model.neighbors import NeighborIndex, build_index
from recsys.model.ranking import RankingHead
from recsys.model.topk import best, best_of_rows

if TYPE_CHECKING:
    import torch

    from recsys.data.interactions import Interactions
    from recsys.model.network import DotProductBias


def _array(weights: torch.Tensor) -> np.ndarray:
    """A trained parameter as a float32 numpy array of its own."""
    copied: np.ndarray = weights.detach().cpu().float().numpy().copy()
    return copied


class Scored(NamedTuple):
    # A named tuple, not a frozen dataclass: a served list makes ten of these per request,
    # and a frozen dataclass costs ~0.6 us each to build.
    item_id: str
    score: float
    """What a list is ordered by: the ranking score (see `recsys.model.ranking`); a
    similarity or a bias elsewhere. Comparable within one answer only."""
    predicted_rating: float | None = None
    """The rating head's prediction, inside the rating scale."""
    explored: bool = False
    """The slot was filled by the exploration policy (`recsys.exploration`)."""
    propensity: float = 1.0
    """The probability that the serving policy shows this item in this slot."""


class Ranking(NamedTuple):
    """A user's best candidates, best first: what a list is cut from."""

    rows: np.ndarray
    scores: np.ndarray
    ratings: np.ndarray
    """Predicted ratings."""
    complete: bool
    """Whether these are every item the user may get."""


class RankingKey(NamedTuple):
    """What one user's ranking is scored for: a `Ranking` of a key serves every list that asks
    for as many items or fewer, with the same support and seen items."""

    row: int
    min_support: int
    include_seen: bool
    depth: int


@dataclass
class Recommender:
    RANKING_DEPTH: ClassVar[int] = 100
    """Candidates ranked (and cached) for a user at least: k up to 100 with exclusions, and
    the next pages, come from one scoring of the catalog."""

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
    info: dict[str, Any] = field(default_factory=dict)
    ranking: RankingHead | None = None
    """The ranking head; without one (older artifacts), lists rank by predicted rating."""

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
        # Rows that the split left without training data hold their random initial values:
        # they must neither be recommended nor trusted for predictions.
        self._untrained_items = np.flatnonzero(self.item_counts == 0)
        self._trained_users = self.user_counts > 0
        # Unit item vectors, computed once: nearest-item queries become one matrix product.
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        self._unit_items = self.item_factors / np.maximum(norms, 1e-12)
        self._neighbors: NeighborIndex | None = None
        scale = self.info.get("rating_scale")
        # The sigmoid's range is the scale widened (RatingScale.output_range); what we tell a
        # client stays on the scale.
        span = (self.y_range[1] - self.y_range[0]) / 1.2
        self.scale = (
            (float(scale["min"]), float(scale["max"]))
            if scale
            else (self.y_range[0] + 0.1 * span, self.y_range[1] - 0.1 * span)
        )
        # The ranking score as one dot product: items [q_i, blend f_i] + (c_i + blend b_i),
        # users [p_u, r_u] + blend (b_u + b); without a ranking head, the rating logit.
        head = self.ranking
        if head is not None and head.item_out.shape[0] != n_items:
            raise ValueError("ranking head does not match the item vocabulary")
        self._blend = head.blend if head is not None else 1.0
        # With a blend of 0 the rating half adds nothing to the score: it is left out of the
        # product, which halves the work of scoring a first visit.
        self._with_rating = head is None or head.blend != 0
        if head is not None:
            items = [head.item_out]
            if self._with_rating:
                items.append(head.blend * self.item_factors)
            # Fortran order: a column per item is contiguous, as CandidateSet scores them.
            self._rank_items = np.asfortranarray(np.hstack(items))
            self._rank_bias = (head.item_bias + head.blend * self.item_bias).astype(np.float32)
        else:
            self._rank_items, self._rank_bias = self.item_factors, self.item_bias
        # Whom a stranger is ranked as: the mean of the learned users' ranking vectors. A zero
        # vector ranked by the item biases alone, which put Powder and Elizabeth beside
        # Shawshank on MovieLens; the typical user gets the films most people chose and liked.
        trained = (self.user_counts > 0).astype(np.float32)
        n_trained = max(1.0, float(trained.sum()))
        # The choice head's half alone is the prior of a visitor's fold-in (RankingHead.fold_in).
        self._typical_choice: np.ndarray = (
            np.zeros(0, dtype=np.float32)
            if head is None
            else trained @ head.user_vectors / n_trained
        )
        self._typical_user = self._ranked_as(
            None if head is None else self._typical_choice, trained @ self.user_factors / n_trained
        )
        # A service asks for one or two values of min_support; a set is at most half the
        # item matrix (candidates.COMPACT_SHARE), so four bound the memory at twice it.
        self._candidate_sets: LruCache[int, CandidateSet] = LruCache(4)
        self._rankings: LruCache[tuple[int, int, bool], Ranking] = LruCache(0)

    def cache_rankings(self, users: int) -> None:
        """Keep the ranked candidates of up to `users` users (the least recently served are
        forgotten first): a user who comes back is answered without scoring the catalog, about
        1.3 KB a user. Off (0) unless asked for; the service turns it on."""
        self._rankings = LruCache(users)

    def build_neighbor_index(self, *, exact_limit: int = 100_000) -> NeighborIndex:
        """Build (or rebuild) the nearest-item index; a service does it once when it loads a
        model so that the first request does not pay for it."""
        self._neighbors = build_index(self._unit_items, exact_limit=exact_limit)
        return self._neighbors

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_network(
        cls,
        net: DotProductBias,
        train: Interactions,
        info: dict[str, Any] | None = None,
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
        return cls(
            user_factors=_array(net.user_factors),
            item_factors=_array(net.item_factors),
            user_bias=_array(net.user_bias),
            item_bias=_array(net.item_bias),
            global_bias=float(net.global_bias.detach()),
            y_range=net.y_range,
            user_vocab=train.user_vocab,
            item_vocab=train.item_vocab,
            user_counts=train.user_counts().astype(np.int64),
            item_counts=train.item_counts().astype(np.int64),
            seen_indptr=indptr,
            seen_items=seen.items[order].astype(np.int32),
            info=dict(info or {}),
            ranking=ranking,
        )

    def __repr__(self) -> str:
        return (
            f"<Recommender {self.info.get('version', 'unsaved')}: {len(self.user_vocab):,} users,"
            f" {len(self.item_vocab):,} items, {self.n_factors} factors>"
        )

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    def seen(self, user_row: int) -> np.ndarray:
        return self.seen_items[self.seen_indptr[user_row] : self.seen_indptr[user_row + 1]]

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
        items = np.where(
            (items >= 0) & (self.item_counts[np.maximum(items, 0)] > 0), items, UNKNOWN
        )
        known_user, known_item = users >= 0, items >= 0
        uc, ic = np.maximum(users, 0), np.maximum(items, 0)
        logits = np.full(users.shape, self.global_bias, dtype=np.float32)
        logits += np.where(known_user, self.user_bias[uc], 0.0)
        logits += np.where(known_item, self.item_bias[ic], 0.0)
        dots = np.einsum("ij,ij->i", self.user_factors[uc], self.item_factors[ic])
        logits += np.where(known_user & known_item, dots, 0.0)
        return self._ratings(logits)

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
        return row != UNKNOWN and bool(self.item_counts[row] > 0)

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        """Ranking scores of every item for a batch of user rows (the order lists follow), as
        evaluation takes them; serving ranks with numpy alone (`_rank_users`)."""
        import torch  # evaluation only: the service never imports torch (RSS of a worker)

        rows = np.asarray(users, dtype=np.int64)
        scores = self._rank_users(rows) @ self._rank_items.T + self._rank_bias
        scores[:, self._untrained_items] = -np.inf
        return torch.from_numpy(scores)

    def _rank_users(self, rows: np.ndarray) -> np.ndarray:
        """Users' halves of the ranking dot product (see __post_init__)."""
        choice = None if self.ranking is None else self.ranking.user_vectors[rows]
        return self._ranked_as(choice, self.user_factors[rows])

    def _rank_user(self, row: int) -> np.ndarray:
        """One user's half, from views of the tables: gathering by an index array made copies
        (3 us of the ~95 us of a first visit)."""
        choice = None if self.ranking is None else self.ranking.user_vectors[row]
        return self._ranked_as(choice, self.user_factors[row])

    def _ranked_as(self, choice: np.ndarray | None, rating: np.ndarray) -> np.ndarray:
        """The user's half of the ranking product from their vectors (or rows of them) in the
        choice head (None without one) and the rating head."""
        if choice is None:
            return rating
        if not self._with_rating:
            return choice
        joined: np.ndarray = np.concatenate([choice, rating], axis=-1)
        return joined

    def _rank_offset(self, user_bias: float) -> float:
        return self._blend * (user_bias + self.global_bias)

    # --- top-k ------------------------------------------------------------------------------

    def _eligible(self, min_support: int) -> np.ndarray:
        """Items with at least `min_support` training ratings (never an untrained row)."""
        eligible: np.ndarray = self.item_counts >= max(1, min_support)
        return eligible

    def _candidates(self, min_support: int) -> CandidateSet:
        """The items a list may hold at this support, laid out for one-user scoring."""
        found = self._candidate_sets.get(min_support)
        if found is None:
            found = CandidateSet(
                self._rank_items, self._rank_bias, self._eligible(min_support), self.item_counts
            )
            self._candidate_sets.put(min_support, found)
        return found

    def _known_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Item rows of the ids in the vocabulary; unknown ids are left out."""
        rows = self.item_vocab.indices(item_ids)
        known: np.ndarray = rows[rows != UNKNOWN]
        return known

    def _scored(self, rows: np.ndarray, scores: np.ndarray, ratings: np.ndarray) -> list[Scored]:
        # map() over the columns: a comprehension over zip() took half again as long, on
        # every list served.
        ids = self.item_vocab.ids_of(rows.tolist())
        return list(map(Scored, ids, scores.tolist(), ratings.tolist()))

    def _explored(
        self,
        candidates: CandidateSet | None,
        logits: np.ndarray,
        k: int,
        exploring: Exploring,
        rate: tuple[np.ndarray, float],
    ) -> list[Scored]:
        """A list drawn by the exploration policy from every candidate's logit (banned ones
        -inf), rated by the rating head's user vector and bias in `rate`. Logits are over
        `candidates`, or over the whole catalog by item row when None."""
        drawn = exploring.policy.layout(logits, k).draw(exploring.rng)
        rows = drawn.candidates if candidates is None else candidates.item_rows(drawn.candidates)
        ratings = self._item_ratings(*rate, rows)
        ids = self.item_vocab.ids_of(rows.tolist())
        return [
            Scored(i, float(s), float(r), bool(e), float(p))
            for i, s, r, e, p in zip(
                ids,
                logits[drawn.candidates],
                ratings,
                drawn.explored,
                drawn.propensities,
                strict=True,
            )
        ]

    def _squash(self, logits: np.ndarray) -> np.ndarray:
        """Logits to the network's scaled sigmoid (float64)."""
        lo, hi = self.y_range
        return lo + (hi - lo) / (1.0 + np.exp(-logits.astype(np.float64)))

    def _ratings(self, logits: np.ndarray) -> np.ndarray:
        """Rating logits to predicted ratings on the rating scale: the sigmoid's range is
        wider than the scale, so that 5 stars can be reached; an answer never leaves it."""
        # The method, not np.clip: half the cost on the ten values of a list.
        clipped: np.ndarray = self._squash(logits).clip(*self.scale)
        return clipped

    def _item_ratings(
        self, user_vector: np.ndarray, user_bias: float, rows: np.ndarray
    ) -> np.ndarray:
        """Predicted ratings of a few item rows for one user of the rating head."""
        one = self._items_ratings(user_vector[np.newaxis], np.array([user_bias]), rows[np.newaxis])
        ratings: np.ndarray = one[0]
        return ratings

    def _items_ratings(
        self, user_vectors: np.ndarray, user_biases: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """Predicted ratings of item rows for several users of the rating head: row b of
        `items` for user vector and bias b. Products summed along the factors, not a matrix
        product: each sum is then the same however many users and items are rated together, so
        a ranking scored in a batch, alone or from the cache predicts the same ratings."""
        pairs = self.item_factors[items] * user_vectors[:, np.newaxis, :]
        logits = pairs.sum(axis=2) + self.item_bias[items]
        logits += (user_biases + self.global_bias)[:, np.newaxis]
        return self._ratings(logits)

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        include_seen: bool = False,
        exclude: Sequence[str] = (),
        min_support: int = 1,
        allowed: np.ndarray | None = None,
        exploring: Exploring | None = None,
        ranked: Ranking | None = None,
    ) -> list[Scored]:
        """Top-k items for a known user by ranking score, with predicted ratings; [] for an
        unknown user (ask `cold_start` then). `min_support` keeps items rated fewer times out:
        their vectors are mostly noise. `allowed` (a mask over item rows, such as a genre
        filter) is applied before the top k is cut. With `exploring`, a share of the slots is
        drawn by its policy from every candidate (the ranking cache is not used). `ranked` is
        the ranking of `ranking_key` for these arguments when the caller scored it already,
        with other users' (`rank_many`)."""
        if not self.is_known_user(user_id):
            return []
        row = self.user_vocab.index(user_id)
        banned = self._known_rows(exclude) if exclude else ()
        if exploring is not None and exploring.policy.slots(k):
            candidates = self._candidates(min_support)
            logits = self._user_logits(row, candidates, include_seen)
            if allowed is not None:
                candidates.keep_only(logits, allowed)
            if len(banned):
                candidates.ban(logits, np.asarray(banned))
            rate = (self.user_factors[row], float(self.user_bias[row]))
            return self._explored(candidates, logits, k, exploring, rate)
        key = self._ranking_key(row, k, len(banned), allowed, min_support, include_seen)
        rows, scores, ratings, complete = self._ranking(key, ranked)
        if len(banned) or allowed is not None:
            keep = np.ones(len(rows), dtype=bool)
            if len(banned):
                keep &= ~np.isin(rows, banned)
            if allowed is not None:
                keep &= allowed[rows]
                if keep.sum() < k and not complete:
                    # Too few of the cached best pass: rank the allowed items themselves.
                    rows, scores, ratings = self._rank_allowed(
                        row, min_support, include_seen, allowed, banned, k
                    )
                    keep = np.ones(len(rows), dtype=bool)
            rows, scores, ratings = rows[keep], scores[keep], ratings[keep]
        return self._scored(rows[:k], scores[:k], ratings[:k])

    def _user_logits(self, row: int, candidates: CandidateSet, include_seen: bool) -> np.ndarray:
        logits = candidates.score(
            self._rank_user(row),
            self._rank_offset(float(self.user_bias[row])),
        )
        if not include_seen:
            candidates.ban(logits, self.seen(row))
        return logits

    def _rank_allowed(
        self,
        row: int,
        min_support: int,
        include_seen: bool,
        allowed: np.ndarray,
        banned: np.ndarray | tuple[()],
        k: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The best k allowed items for a user, not cached (a filter's own ranking)."""
        candidates = self._candidates(min_support)
        logits = self._user_logits(row, candidates, include_seen)
        candidates.keep_only(logits, allowed)
        if len(banned):
            candidates.ban(logits, np.asarray(banned))
        local, values = best(logits, k)
        rows = candidates.item_rows(local)
        user_bias = float(self.user_bias[row])
        return rows, values, self._item_ratings(self.user_factors[row], user_bias, rows)

    def ranking_key(
        self,
        user_id: str,
        k: int = 10,
        *,
        include_seen: bool = False,
        exclude: Sequence[str] = (),
        min_support: int = 1,
        allowed: np.ndarray | None = None,
        exploring: Exploring | None = None,
    ) -> RankingKey | None:
        """The ranking that `recommend` with these arguments would score, for a caller that
        scores several users' together (`rank_many`); None when it would score none: an
        unknown user, an exploring list, or a ranking in the cache."""
        if not self.is_known_user(user_id) or (exploring is not None and exploring.policy.slots(k)):
            return None
        row = self.user_vocab.index(user_id)
        banned = len(self._known_rows(exclude)) if exclude else 0
        key = self._ranking_key(row, k, banned, allowed, min_support, include_seen)
        return None if self._cut(key, self._rankings.get(key[:3])) else key

    def _ranking_key(
        self,
        row: int,
        k: int,
        banned: int,
        allowed: np.ndarray | None,
        min_support: int,
        include_seen: bool,
    ) -> RankingKey:
        # The best k + |banned| without the exclusions hold the best k with them; a filter
        # looks through the whole cached ranking first.
        depth = k + banned if allowed is None else max(k, self.RANKING_DEPTH)
        return RankingKey(row, min_support, include_seen, depth)

    @staticmethod
    def _cut(key: RankingKey, found: Ranking | None) -> Ranking | None:
        """`found` cut to the key's depth; None when it is None or holds fewer."""
        if found is None or not (found.complete or len(found.rows) >= key.depth):
            return None
        depth = key.depth
        return Ranking(
            found.rows[:depth],
            found.scores[:depth],
            found.ratings[:depth],
            found.complete and len(found.rows) <= depth,
        )

    def _ranking(self, key: RankingKey, ranked: Ranking | None = None) -> Ranking:
        """The best `key.depth` items a user may get: `ranked` if given, else from the cache
        when this user was ranked lately, else scored now. The model never changes, so neither
        does a ranking: entries need no invalidation, only a bound on their number."""
        found = self._cut(key, ranked if ranked is not None else self._rankings.get(key[:3]))
        if found is None:
            found = self._cut(key, self.rank_many([key])[0])
        assert found is not None  # rank_many ranks at least key.depth deep
        return found

    def rank_many(self, keys: Sequence[RankingKey]) -> list[Ranking]:
        """The rankings of these keys, in order (each at least as deep as its key asks), also
        kept in the cache. One matrix product scores the users that share a support: it reads
        the candidates' factors once instead of once a user, and the numpy calls of a ranking
        are made once for all of them (service.batching)."""
        groups: dict[tuple[int, bool], list[int]] = {}
        for n, key in enumerate(keys):
            groups.setdefault((key.min_support, key.include_seen), []).append(n)
        found: dict[int, Ranking] = {}
        for (min_support, include_seen), members in groups.items():
            depth = max(keys[n].depth for n in members)
            # Ranked deeper than asked only for the cache: with it off, a first visit would
            # rate 90 items it never shows.
            wanted = max(depth, self.RANKING_DEPTH) if self._rankings.capacity else depth
            rows = np.array([keys[n].row for n in members], dtype=np.int64)
            for n, ranking in zip(
                members, self._rank_rows(rows, min_support, include_seen, wanted), strict=True
            ):
                self._rankings.put(keys[n][:3], ranking)
                found[n] = ranking
        return [found[n] for n in range(len(keys))]

    def _rank_rows(
        self, rows: np.ndarray, min_support: int, include_seen: bool, wanted: int
    ) -> list[Ranking]:
        """The best `wanted` candidates of each user row, scored in one product."""
        candidates = self._candidates(min_support)
        offsets = self._blend * (self.user_bias[rows] + self.global_bias)
        logits = candidates.score_rows(self._rank_users(rows), offsets)
        if not include_seen:
            starts, ends = self.seen_indptr[rows], self.seen_indptr[rows + 1]
            seen = [
                self.seen_items[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
            ]
            which = np.repeat(np.arange(len(rows)), ends - starts)
            candidates.ban_rows(logits, which, np.concatenate(seen))
        local, values = best_of_rows(logits, wanted)
        items = candidates.item_rows(local).astype(np.int32)
        # Cached: 1.6 KB of arrays for 100 candidates, rated once rather than on each visit.
        ratings = self._items_ratings(self.user_factors[rows], self.user_bias[rows], items)
        ratings = ratings.astype(np.float32)
        scores = values.astype(np.float32)
        # Banned candidates (-inf) sort last: a user with fewer allowed items than wanted gets
        # them all, and the ranking is complete.
        finite = np.isfinite(scores).sum(axis=1).tolist()
        return [
            Ranking(items[b, :n], scores[b, :n], ratings[b, :n], n < wanted)
            for b, n in enumerate(finite)
        ]

    def candidate_logits(
        self, user_id: str, *, min_support: int, exclude: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every candidate a list may hold for a learned user: (item rows, ranking logits,
        predicted ratings), with only `exclude` banned (-inf), not the ratings the model
        trained on: off-policy evaluation judges lists served before some of those ratings
        were given. None for a user the model has not learned."""
        if not self.is_known_user(user_id):
            return None
        row = self.user_vocab.index(user_id)
        candidates = self._candidates(min_support)
        logits = self._user_logits(row, candidates, include_seen=True)
        if exclude:
            candidates.ban(logits, self._known_rows(exclude))
        rows = candidates.item_rows(np.arange(len(logits)))
        ratings = self._item_ratings(self.user_factors[row], float(self.user_bias[row]), rows)
        return rows, logits, ratings

    def cold_start(
        self,
        k: int = 10,
        *,
        min_support: int = 20,
        exclude: Sequence[str] = (),
        allowed: np.ndarray | None = None,
        exploring: Exploring | None = None,
    ) -> list[Scored]:
        """For a user we know nothing about: the best ranked items for the typical user (the
        mean of the learned users' vectors) among those rated at least `min_support` times
        (and `allowed`), with the rating an average user would give. Falls back to the most
        rated items when too few items have that support."""
        eligible = self._eligible(min_support)
        if allowed is not None:
            eligible &= allowed
        if eligible.sum() < k:
            counts = self.item_counts if allowed is None else np.where(allowed, self.item_counts, 0)
            eligible = np.zeros_like(eligible)
            eligible[np.argsort(-counts, kind="stable")[: max(k, 1)]] = True
            eligible &= counts > 0
        scores = self._rank_items @ self._typical_user + self._rank_bias + self._rank_offset(0.0)
        logits = np.where(eligible, scores, -np.inf)
        logits[self._known_rows(exclude)] = -np.inf
        if exploring is not None and exploring.policy.slots(k):
            zero = np.zeros(self.n_factors, dtype=np.float32)
            return self._explored(None, logits, k, exploring, (zero, 0.0))
        rows, scores = best(logits, k)
        return self._scored(rows, scores, self._ratings(self.item_bias[rows] + self.global_bias))

    def _trained_rows(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Item rows of the ids, and which of them the model learned (known and trained)."""
        rows = self.item_vocab.indices(item_ids)
        return rows, (rows != UNKNOWN) & (self.item_counts[np.maximum(rows, 0)] > 0)

    FOLD_IN_BIAS_PRIOR = 10.0
    """L2 on a folded-in visitor's bias, in ratings' worth of pull towards the typical user's
    (zero): a visitor known by three 5-star ratings is not predicted 5 stars for everything.
    Chosen on held-out MovieLens visitors (`benchmarks/visitor_ratings.py`): against 0.1,
    RMSE of their other ratings 1.24 -> 1.01 given 3 liked films, 0.98 -> 0.96 given 10
    random ratings; their lists' mean predicted rating 4.44 -> 4.11."""

    def fold_in(
        self,
        item_ids: Sequence[str],
        ratings: Sequence[float],
        *,
        l2: float = 0.1,
        bias_prior: float | None = None,
    ) -> tuple[np.ndarray, float]:
        """A rating-head user vector and bias for someone known only by a few ratings, without
        retraining.

        Item factors stay frozen; we solve the regularised least squares of the linearised
        model in logit space: targets are logit((r - lo) / (hi - lo)) minus the item and global
        biases, features are [q_i, 1]. This is one ALS half-step (Hu, Koren & Volinsky 2008).
        In numpy: a system this small took torch ~500 us of per-operation overhead.
        """
        rows, known = self._trained_rows(item_ids)
        if not known.any():
            return np.zeros(self.n_factors, dtype=np.float32), 0.0
        rows = rows[known]
        lo, hi = self.y_range
        frac = (np.asarray(ratings, dtype=np.float64)[known] - lo) / (hi - lo)
        frac = frac.clip(0.02, 0.98)
        target = np.log(frac / (1.0 - frac)) - self.item_bias[rows] - self.global_bias
        x = np.ones((len(rows), self.n_factors + 1))
        x[:, :-1] = self.item_factors[rows]
        reg = np.eye(x.shape[1]) * l2 * len(rows)
        reg[-1, -1] = self.FOLD_IN_BIAS_PRIOR if bias_prior is None else bias_prior
        solution = np.linalg.solve(x.T @ x + reg, x.T @ target)
        return solution[:-1].astype(np.float32), float(solution[-1])

    def recommend_for_ratings(
        self,
        item_ids: Sequence[str],
        ratings: Sequence[float],
        k: int = 10,
        *,
        exclude: Sequence[str] = (),
        min_support: int = 10,
        allowed: np.ndarray | None = None,
        exploring: Exploring | None = None,
    ) -> list[Scored]:
        """Top-k for a visitor described by a few (item, rating) pairs, folded into both
        heads: the ranking head places them by what they rated (as training places every
        user), the rating head by how (`fold_in`), so low ratings count against an item's
        neighbours.

        Candidates need `min_support` training ratings: a vector fitted to a handful of ratings
        is matched best by rarely rated items whose vectors are mostly noise."""
        vector, bias = self.fold_in(item_ids, ratings)
        candidates = self._candidates(min_support)
        if self.ranking is not None:
            rows, known = self._trained_rows(item_ids)
            choice = self.ranking.fold_in(
                rows[known],
                np.asarray(ratings)[known],
                np.flatnonzero(self._eligible(min_support)),
                prior=self._typical_choice,
            )
            user = self._ranked_as(choice, vector)
        else:
            user = vector
        logits = candidates.score(user, self._rank_offset(bias))
        candidates.ban(logits, self._known_rows([*item_ids, *exclude]))
        if allowed is not None:
            candidates.keep_only(logits, allowed)
        if exploring is not None and exploring.policy.slots(k):
            return self._explored(candidates, logits, k, exploring, (vector, bias))
        local, values = best(logits, k)
        rows = candidates.item_rows(local)
        return self._scored(rows, values, self._item_ratings(vector, bias, rows))

    # --- interpretation ---------------------------------------------------------------------

    def similar_items(
        self,
        item_id: str,
        k: int = 10,
        *,
        min_support: int = 1,
        allowed: np.ndarray | None = None,
    ) -> list[Scored]:
        """Nearest items by cosine similarity of the item factors, the item itself excluded.

        `min_support` drops items rated fewer times: an item with one rating has a vector that
        says little, yet can land anywhere."""
        row = self.item_vocab.index(item_id)
        if row == UNKNOWN or self.item_counts[row] == 0:
            return []
        index = self._neighbors or self.build_neighbor_index()
        eligible = self._eligible(min_support)
        if allowed is not None:
            eligible &= allowed
        eligible[row] = False
        rows, sims = index.search(self._unit_items[row], k, eligible)
        ids = self.item_vocab.ids_of(rows.tolist())
        return [Scored(i, float(v)) for i, v in zip(ids, sims.tolist(), strict=True)]

    def item_bias_ranking(
        self, n: int = 10, *, min_support: int = 20, lowest: bool = False
    ) -> list[Scored]:
        """Items with the highest (or lowest) learned bias: liked (or disliked) beyond what
        their fans' tastes explain (fastai book, ch. 8)."""
        bias = -self.item_bias if lowest else self.item_bias
        rows, values = best(np.where(self._eligible(min_support), bias, -np.inf), n)
        ids = self.item_vocab.ids_of(rows.tolist())
        return [Scored(i, -v if lowest else v) for i, v in zip(ids, values.tolist(), strict=True)]
