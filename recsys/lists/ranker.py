"""The list-maker: a model's top-k lists for known users, visitors and strangers.

The contract, shared by every scorer here (implicit's `RecommenderBase` has the same shape):

    recommend(user_id, ListRequest(k)) -> list[Scored]
        best first, k or fewer, never items the user rated

A `Ranker` owns what making lists needs beyond the model: the candidate sets laid out per
support, the cache of users' rankings, and the batching of several users' rankings into one
product (`rank_many`, for service.batching). Every list ends in one step (`_finish`): its
best k, or, while exploring, the exploration policy's draw from every candidate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from recsys.lists.because import RememberedReasons
from recsys.lists.candidates import CandidateSet
from recsys.lists.rotation import demoted_rows
from recsys.lists.scored import ListRequest, Ranking, RankingKey
from recsys.model.fold_in import BIAS_PRIOR, fold_in
from recsys.model.lru import LruCache
from recsys.model.recommender import Recommender
from recsys.model.scored import Scored
from recsys.model.topk import best, best_of_rows

_LiveUser = tuple[np.ndarray, np.ndarray, float]
"""A live user's ranking vector, rating vector and bias."""


class Ranker:
    RANKING_DEPTH: ClassVar[int] = 100
    """Candidates ranked (and cached) for a user at least: k up to 100 with exclusions, and
    the next pages, come from one scoring of the catalog."""

    def __init__(
        self, model: Recommender, *, cache_users: int = 0, bias_prior: float = BIAS_PRIOR
    ) -> None:
        """`cache_users`: keep the ranked candidates of up to that many users (the least
        recently served are forgotten first): a user who comes back is answered without
        scoring the catalog, about 1.3 KB a user. The model never changes, so neither does a
        ranking: entries need no invalidation, only a bound on their number. `bias_prior`:
        a visitor's bias prior in the rating head's fold-in (`recsys.model.fold_in`)."""
        self.model = model
        self.bias_prior = bias_prior
        # A service asks for one or two values of min_support; a set is at most half the
        # item matrix (candidates.COMPACT_SHARE), so four bound the memory at twice it.
        self._candidate_sets: LruCache[int, CandidateSet] = LruCache(4)
        self._rankings: LruCache[tuple[int, int, bool], Ranking] = LruCache(cache_users)
        # Live users' vectors by (row, support, what they sent since): a live user's next
        # visits skip the fold-in until they send more (about 1 KB a user).
        self._live: LruCache[tuple[int, int, int], _LiveUser] = LruCache(cache_users)
        self.reasons = RememberedReasons(model, cache_users)
        """Why each item of a learned user's list is there, kept for their next visit."""

    def _candidates(self, min_support: int) -> CandidateSet:
        """The items a list may hold at this support, laid out for one-user scoring."""
        found = self._candidate_sets.get(min_support)
        if found is None:
            m = self.model
            found = CandidateSet(m.rank_items, m.rank_bias, m.eligible(min_support), m.item_counts)
            self._candidate_sets.put(min_support, found)
        return found

    # --- known users ------------------------------------------------------------------------

    def recommend(
        self, user_id: str, ask: ListRequest = ListRequest(), *, ranked: Ranking | None = None
    ) -> list[Scored]:
        """Top-k items for a known user by ranking score, with predicted ratings; [] for an
        unknown user (ask `cold_start` then). An exploring list is drawn from every candidate
        (the ranking cache is not used). `ranked` is the ranking of `ranking_key` for this
        request when the caller scored it already, with other users' (`rank_many`)."""
        m = self.model
        if not m.is_known_user(user_id):
            return []
        row = m.user_vocab.index(user_id)
        k, allowed = ask.k, ask.allowed
        banned = m.known_rows(ask.exclude) if ask.exclude else _NONE
        if _explores(ask) or ask.demoted:  # scored for this request alone: no cache
            return self._own_list(row, ask, banned)
        rows, scores, ratings, complete = self._ranking(self._key(row, ask, len(banned)), ranked)
        if len(banned) or allowed is not None:  # a returning user's plain list skips this
            keep = ~np.isin(rows, banned) if len(banned) else np.ones(len(rows), dtype=bool)
            if allowed is not None:
                keep &= allowed[rows]
                if keep.sum() < k and not complete:
                    # Too few of the cached best pass: rank the allowed items themselves.
                    return self._own_list(row, ask, banned)
            rows, scores, ratings = rows[keep], scores[keep], ratings[keep]
        return self._scored(rows[:k], scores[:k], ratings[:k])

    def _own_list(self, row: int, ask: ListRequest, banned: np.ndarray) -> list[Scored]:
        """A known user's list scored for this request alone, not from a cached ranking."""
        m = self.model
        candidates = self._candidates(ask.min_support)
        logits = self._user_logits(row, candidates, ask.include_seen)
        rate = (m.user_factors[row], float(m.user_bias[row]))
        return self._finish(candidates, logits, ask, rate, banned)

    def _user_logits(self, row: int, candidates: CandidateSet, include_seen: bool) -> np.ndarray:
        m = self.model
        logits = candidates.score(m.rank_user(row), m.rank_offset(float(m.user_bias[row])))
        if not include_seen:
            candidates.ban(logits, m.seen(row))
        return logits

    def ranking_key(self, user_id: str, ask: ListRequest = ListRequest()) -> RankingKey | None:
        """The ranking that `recommend` with this request would score, for a caller that
        scores several users' together (`rank_many`); None when it would score none: an
        unknown user, an exploring list, or a ranking in the cache."""
        m = self.model
        if not m.is_known_user(user_id) or _explores(ask) or ask.demoted:
            return None
        banned = len(m.known_rows(ask.exclude)) if ask.exclude else 0
        key = self._key(m.user_vocab.index(user_id), ask, banned)
        return None if self._cut(key, self._rankings.get(key[:3])) else key

    def _key(self, row: int, ask: ListRequest, banned: int) -> RankingKey:
        # The best k + |banned| without the exclusions hold the best k with them; a filter
        # looks through the whole cached ranking first.
        depth = ask.k + banned if ask.allowed is None else max(ask.k, self.RANKING_DEPTH)
        return RankingKey(row, ask.min_support, ask.include_seen, depth)

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
        when this user was ranked lately, else scored now."""
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
        m = self.model
        candidates = self._candidates(min_support)
        offsets = m.blend * (m.user_bias[rows] + m.global_bias)
        logits = candidates.score_rows(m.rank_users(rows), offsets)
        if not include_seen:
            starts, ends = m.seen_indptr[rows], m.seen_indptr[rows + 1]
            seen = [m.seen_items[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
            which = np.repeat(np.arange(len(rows)), ends - starts)
            candidates.ban_rows(logits, which, np.concatenate(seen))
        local, values = best_of_rows(logits, wanted)
        items = candidates.item_rows(local).astype(np.int32)
        # Cached: 1.6 KB of arrays for 100 candidates, rated once rather than on each visit.
        ratings = m.items_ratings(m.user_factors[rows], m.user_bias[rows], items)
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
        self,
        user_id: str,
        *,
        min_support: int,
        exclude: Sequence[str],
        live: tuple[Sequence[str], Sequence[float]] | None = None,
        demoted: Mapping[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every candidate a list may hold for a learned user: (item rows, ranking logits,
        predicted ratings), with only `exclude` banned (-inf), not the ratings the model
        trained on: off-policy evaluation judges lists served before some of those ratings
        were given. With `live` (item ids and ratings since training), the user as
        `recommend_live` moves them. None for a user the model has not learned."""
        m = self.model
        if not m.is_known_user(user_id):
            return None
        row = m.user_vocab.index(user_id)
        candidates = self._candidates(min_support)
        if live is not None and len(live[0]):
            user, vector, bias = self._live_user(row, live[0], live[1], min_support)
            logits = candidates.score(user, m.rank_offset(bias))
        else:
            logits = self._user_logits(row, candidates, include_seen=True)
            vector, bias = m.user_factors[row], float(m.user_bias[row])
        if exclude:
            candidates.ban(logits, m.known_rows(exclude))
        lowered = demoted_rows(m, demoted)
        if lowered is not None:
            candidates.lower(logits, *lowered)
        rows = candidates.item_rows(np.arange(len(logits)))
        return rows, logits, m.item_ratings(vector, bias, rows)

    # --- strangers and visitors -------------------------------------------------------------

    def cold_start(self, ask: ListRequest = ListRequest(min_support=20)) -> list[Scored]:
        """For a user we know nothing about: the best ranked items for the typical user (the
        mean of the learned users' vectors) among those rated at least `min_support` times
        (and `allowed`), with the rating an average user would give. Falls back to the most
        rated items when too few items have that support."""
        m = self.model
        k, allowed = ask.k, ask.allowed
        eligible = m.eligible(ask.min_support)
        if allowed is not None:
            eligible &= allowed
        if eligible.sum() < k:
            counts = m.item_counts if allowed is None else np.where(allowed, m.item_counts, 0)
            eligible = np.zeros_like(eligible)
            eligible[np.argsort(-counts, kind="stable")[: max(k, 1)]] = True
            eligible &= counts > 0
        scores = m.rank_items @ m.typical_user + m.rank_bias + m.rank_offset(0.0)
        logits = np.where(eligible, scores, -np.inf)
        zero = np.zeros(m.n_factors, dtype=np.float32)
        return self._finish(None, logits, ask, (zero, 0.0), m.known_rows(ask.exclude))

    def recommend_for_ratings(
        self,
        item_ids: Sequence[str],
        ratings: Sequence[float],
        ask: ListRequest = ListRequest(min_support=10),
    ) -> list[Scored]:
        """Top-k for a visitor described by a few (item, rating) pairs, folded into both
        heads: the ranking head places them by what they rated (as training places every
        user), the rating head by how (`fold_in`), so low ratings count against an item's
        neighbours.

        Candidates need `min_support` training ratings: a vector fitted to a handful of ratings
        is matched best by rarely rated items whose vectors are mostly noise."""
        m = self.model
        vector, bias = fold_in(m, item_ids, ratings, bias_prior=self.bias_prior)
        candidates = self._candidates(ask.min_support)
        user = vector
        if m.ranking is not None:
            rows, known = m.trained_rows(item_ids)
            choice = m.ranking.fold_in(
                rows[known],
                np.asarray(ratings)[known],
                np.flatnonzero(m.eligible(ask.min_support)),
                prior=m.typical_choice,
            )
            user = m.ranked_as(choice, vector)
        logits = candidates.score(user, m.rank_offset(bias))
        banned = m.known_rows([*item_ids, *ask.exclude])
        return self._finish(candidates, logits, ask, (vector, bias), banned)

    def recommend_live(
        self,
        user_id: str,
        item_ids: Sequence[str],
        ratings: Sequence[float],
        ask: ListRequest = ListRequest(),
    ) -> list[Scored]:
        """Top-k for a known user moved by what they rated since the model was trained
        (`item_ids`, `ratings`): both heads fold the new ratings in starting from the
        user's learned vectors (`_live_user`); [] for an unknown user. The fold-in is cached
        per user and what they sent; the ranking, which changes with each rating, is not."""
        m = self.model
        if not m.is_known_user(user_id):
            return []
        row = m.user_vocab.index(user_id)
        key = (row, ask.min_support, hash((tuple(item_ids), tuple(map(float, ratings)))))
        found = self._live.get(key)
        if found is None:
            found = self._live_user(row, item_ids, ratings, ask.min_support)
            self._live.put(key, found)
        user, vector, bias = found
        candidates = self._candidates(ask.min_support)
        logits = candidates.score(user, m.rank_offset(bias))
        banned = m.known_rows(ask.exclude)
        if not ask.include_seen:  # what they rated then and since
            candidates.ban(logits, m.seen(row))
            banned = np.concatenate([banned, m.known_rows(item_ids)])
        return self._finish(candidates, logits, ask, (vector, bias), banned)

    def _live_user(
        self, row: int, item_ids: Sequence[str], ratings: Sequence[float], min_support: int
    ) -> _LiveUser:
        """A learned user moved by ratings since training: their ranking vector, rating
        vector and bias. Both heads start from the user's learned vectors, as a prior as
        strong as what those were learned from (`fold_in`, `RankingHead.fold_in`)."""
        m = self.model
        vector, bias = fold_in(m, item_ids, ratings, bias_prior=self.bias_prior, learned=row)
        if m.ranking is None:
            return vector, vector, bias
        rows, known = m.trained_rows(item_ids)
        learned = len(m.liked(row)) if m.seen_liked is not None else int(m.user_counts[row])
        choice = m.ranking.fold_in(
            rows[known],
            np.asarray(ratings)[known],
            np.flatnonzero(m.eligible(min_support)),
            prior=m.ranking.user_vectors[row],
            learned_targets=max(1, learned),
        )
        return m.ranked_as(choice, vector), vector, bias

    # --- the last step of every list --------------------------------------------------------

    def _finish(
        self,
        candidates: CandidateSet | None,
        logits: np.ndarray,
        ask: ListRequest,
        rate: tuple[np.ndarray, float],
        banned: np.ndarray,
    ) -> list[Scored]:
        """A list from every candidate's logit: `banned` items and those the request does
        not allow taken out, then its best k, or the exploration policy's draw. Logits are
        over `candidates`, or over the whole catalog by item row when None; the items are
        rated by the rating head's user vector and bias in `rate`."""
        k, allowed, exploring = ask.k, ask.allowed, ask.exploring
        lowered = demoted_rows(self.model, ask.demoted)
        if candidates is None:
            if allowed is not None:
                logits = np.where(allowed, logits, -np.inf)
            logits[banned] = -np.inf
            if lowered is not None:
                logits[lowered[0]] -= lowered[1]
        else:
            if allowed is not None:
                candidates.keep_only(logits, allowed)
            if len(banned):
                candidates.ban(logits, banned)
            if lowered is not None:
                candidates.lower(logits, *lowered)
        if exploring is not None and _explores(ask):
            drawn = exploring.policy.layout(logits, k).draw(exploring.rng)
            local, values = drawn.candidates, logits[drawn.candidates]
            explored, propensities = drawn.explored, drawn.propensities
        else:
            local, values = best(logits, k)
            explored, propensities = None, None
        rows = local if candidates is None else candidates.item_rows(local)
        ratings = self.model.item_ratings(*rate, rows)
        if explored is None or propensities is None:
            return self._scored(rows, values, ratings)
        ids = self.model.item_vocab.ids_of(rows.tolist())
        return [
            Scored(i, float(s), float(r), bool(e), float(p))
            for i, s, r, e, p in zip(ids, values, ratings, explored, propensities, strict=True)
        ]

    def _scored(self, rows: np.ndarray, scores: np.ndarray, ratings: np.ndarray) -> list[Scored]:
        # map() over the columns: a comprehension over zip() took half again as long, on
        # every list served.
        ids = self.model.item_vocab.ids_of(rows.tolist())
        return list(map(Scored, ids, scores.tolist(), ratings.tolist()))


_NONE = np.empty(0, dtype=np.int64)
"""No item rows banned."""


def _explores(ask: ListRequest) -> bool:
    return ask.exploring is not None and bool(ask.exploring.policy.slots(ask.k))
