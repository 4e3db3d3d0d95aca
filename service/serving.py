"""Building the lists the API serves, and logging each one as an impression.

Routes call these; they hold no HTTP decisions. Scoring is one matrix-vector product and a
top-k over tensors in memory; the database is touched only for a user the model has not
learned, to fold in ratings they sent since the last training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from recsys.exploration import Exploring, daily_rng
from recsys.ids import recommendation_id
from recsys.lists.because import Because, explain, liked_rows
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model.recommender import Recommender
from recsys.model.scored import Scored
from recsys.store.db import session_scope
from recsys.store.events import user_ratings
from service.catalog import Catalog, GenreFilter
from service.model_holder import LoadedModel
from service.schemas import Strategy
from service.state import AppState

log = logging.getLogger("recsys.service")

Payload = dict[str, Any]
"""A response body as plain data, for `service.deps.json_response`."""


def _exploring(state: AppState, user_id: str | None) -> Exploring | None:
    """The exploration of this user's list today, when the service explores."""
    policy = state.explore
    return Exploring(policy, daily_rng(user_id)) if policy.share > 0 else None


def _publish(
    state: AppState,
    model: LoadedModel,
    user_id: str | None,
    strategy: Strategy,
    scored: list[Scored],
    policy: Payload,
    liked: np.ndarray | None,
) -> Payload:
    """Log the list as an impression and build the body of `RecommendationsPublic`, each
    item with its reason from the item rows the user `liked` (`recsys.lists.because`; None:
    a learned user's list, by what the model learned they liked, `Ranker.reasons`). Plain
    data for `service.deps.json_response`: eleven validated models per list cost more than
    the recommendation (tests hold the body to the schema).

    `policy` says what drew the list (exploration share and temperature, least support, and
    whether the request narrowed the candidates): off-policy evaluation needs it."""
    rec_id = recommendation_id()
    # Column by column: the row and the body read the same ten items.
    items, scores, predicted, explored, propensities = _columns(scored)
    if liked is None:
        reasons = model.lists.reasons(user_id or "", items, explored)
    else:
        reasons = explain(model.recommender, items, explored, liked)
    state.impressions.log(
        {
            "recommendation_id": rec_id,
            "user_external_id": user_id,
            "model_version": model.version,
            "strategy": strategy,
            "items": items,
            "scores": scores,
            "predicted": predicted,
            "explored": explored,
            "propensities": propensities,
            "policy": {**state.explore_json, **policy},
            "served_at": datetime.now(UTC),
        }
    )
    if user_id is not None and state.settings.rotation:
        state.models.showings.note([(user_id, items, time.time())])
    state.metrics.count_served(strategy)
    return {
        "recommendation_id": rec_id,
        "user_id": user_id,
        "model_version": model.version,
        "strategy": strategy,
        "items": _listed(state, model.recommender, items, scores, predicted, explored, reasons),
    }


def _columns(scored: list[Scored]) -> tuple[tuple[Any, ...], ...]:
    """The fields of a list's items as five columns (item ids, scores, ratings, explored,
    propensities)."""
    return tuple(zip(*scored, strict=True)) if scored else ((),) * len(Scored._fields)


def listed(
    state: AppState, rec: Recommender, scored: list[Scored], liked: np.ndarray
) -> list[Payload]:
    """The items of a list as answers give them: rank, titles and genres from the catalog,
    and why each is there for a user who liked the item rows `liked`."""
    items, scores, predicted, explored, _ = _columns(scored)
    reasons = explain(rec, items, explored, liked)
    return _listed(state, rec, items, scores, predicted, explored, reasons)


def _listed(
    state: AppState,
    rec: Recommender,
    items: Sequence[str],
    scores: Sequence[float],
    predicted: Sequence[float | None],
    explored: Sequence[bool],
    reasons: Sequence[Because],
) -> list[Payload]:
    catalog = state.models.catalog
    described = catalog.describe(items)
    new = [False] * len(items)
    if rec.new_items:
        new = rec.is_new[rec.item_vocab.indices(items)].tolist()
    return [
        {
            "rank": rank,
            "item_id": item_id,
            "title": title,
            "genres": genres,
            "score": score,
            "predicted_rating": rating,
            "explored": drawn,
            "new": fresh,
            "because": _because(catalog, why, genres),
        }
        for rank, (item_id, (title, genres), score, rating, drawn, fresh, why) in enumerate(
            zip(items, described, scores, predicted, explored, new, reasons, strict=True), start=1
        )
    ]


def _because(catalog: Catalog, why: Because, genres: list[str]) -> Payload:
    """The reason as answers give it; a new item's names its genres (`genres`)."""
    named = catalog.describe(why.items) if why.items else []
    return {
        "reason": why.reason,
        "items": [
            {"item_id": i, "title": title} for i, (title, _) in zip(why.items, named, strict=True)
        ],
        "genres": genres if why.reason == "new" else [],
    }


def liked_by(rec: Recommender, user_id: str) -> np.ndarray:
    """The item rows a user the model learned liked in its training ratings."""
    return rec.liked(rec.user_vocab.index(user_id))


def _allowed(state: AppState, rec: Recommender, genres: GenreFilter | None) -> np.ndarray | None:
    return None if genres is None else state.models.catalog.allowed(rec, genres)


async def for_known_user(
    state: AppState,
    model: LoadedModel,
    user_id: str,
    k: int,
    *,
    exclude: Sequence[str],
    include_rated: bool,
    min_support: int,
    genres: GenreFilter | None = None,
) -> Payload:
    """The logged list of a user the model learned: moved by what they sent since it was
    trained (`live`), or else their learned ranking, a first visit's scored with those of
    the other requests in hand (`service.batching`)."""
    lists = model.lists
    ask = _request(state, lists.model, user_id, k, exclude, include_rated, min_support, genres)
    items, ratings = _since_training(state, lists.model, user_id)
    if items:
        strategy: Strategy = "live"
        scored = lists.recommend_live(user_id, items, ratings, ask)
    else:
        strategy = "model"
        key = lists.ranking_key(user_id, ask)
        ranked = None if key is None else await state.rankings.ranking(lists, key)
        scored = lists.recommend(user_id, ask, ranked=ranked)
    narrowed = bool(exclude) or include_rated or genres is not None
    rotation = _rotation_json(state, ask.demoted)
    policy = {"min_support": min_support, "narrowed": narrowed, **rotation}
    liked = _liked(lists.model, user_id, items, ratings) if items else None
    return _publish(state, model, user_id, strategy, scored, policy, liked)


def _since_training(
    state: AppState, rec: Recommender, user_id: str
) -> tuple[list[str], list[float]]:
    """What a known user sent since the newest rating `rec` learned, as ratings (none with
    `RECSYS_LIVE_USERS` off)."""
    settings = state.settings
    if not settings.live_users:
        return [], []
    after = float(rec.card.max_timestamp or 0)
    return state.models.recent.live(user_id, after, settings.live_feedback)


def _liked(
    rec: Recommender, user_id: str, items: Sequence[str], ratings: Sequence[float]
) -> np.ndarray:
    """The item rows a known user liked: as the model learned them, and since."""
    learned = liked_by(rec, user_id)
    if not items:
        return learned
    return np.unique(np.concatenate([learned, liked_rows(rec, items, ratings)]))


def _request(
    state: AppState,
    rec: Recommender,
    user_id: str,
    k: int,
    exclude: Sequence[str],
    include_rated: bool,
    min_support: int,
    genres: GenreFilter | None,
) -> ListRequest:
    if not include_rated:
        # Rated since the model was trained (through any replica): not in its seen set.
        exclude = [*exclude, *state.models.recent.rated(user_id)]
    allowed = _allowed(state, rec, genres)
    exploring = _exploring(state, user_id)
    demoted = _demoted(state, user_id)
    return ListRequest(k, exclude, include_rated, min_support, allowed, exploring, demoted)


def _demoted(state: AppState, user_id: str | None) -> dict[str, float] | None:
    """The rotation's penalties of what the user was shown and did not answer (None with
    `RECSYS_ROTATION` off, or for an anonymous list)."""
    rotation = state.settings.rotation_policy
    if rotation is None or user_id is None:
        return None
    models = state.models
    return models.showings.demoted(user_id, rotation, models.recent, time.time()) or None


def _rotation_json(state: AppState, demoted: Mapping[str, float] | None) -> Payload:
    """What the impression's policy records of the rotation (nothing with it off)."""
    rotation = state.settings.rotation_policy
    return {} if rotation is None else {"rotation": rotation.as_json(demoted or {})}


def known_user_list(
    state: AppState,
    lists: Ranker,
    user_id: str,
    k: int,
    *,
    exclude: Sequence[str],
    include_rated: bool,
    min_support: int,
    genres: GenreFilter | None = None,
) -> tuple[Strategy, list[Scored], np.ndarray]:
    """The list of a user the model learned, not logged: its strategy, items and the item
    rows the user liked (what its reasons name)."""
    ask = _request(state, lists.model, user_id, k, exclude, include_rated, min_support, genres)
    items, ratings = _since_training(state, lists.model, user_id)
    liked = _liked(lists.model, user_id, items, ratings)
    if items:
        return "live", lists.recommend_live(user_id, items, ratings, ask), liked
    return "model", lists.recommend(user_id, ask), liked


def stored_ratings(state: AppState, user_id: str) -> tuple[list[str], list[float]]:
    """Ratings a user sent since the model was trained; none if the database is away (the
    answer then degrades to cold start instead of failing)."""
    try:
        with session_scope(state.engine) as s:
            return user_ratings(session=s, user_id=user_id, limit=state.settings.max_batch)
    except SQLAlchemyError as exc:
        log.warning("cannot read ratings of a new user (%s): cold start", type(exc).__name__)
        return [], []


def for_ratings(
    state: AppState,
    model: LoadedModel,
    user_id: str | None,
    items: list[str],
    ratings: list[float],
    k: int,
    exclude: Sequence[str],
    genres: GenreFilter | None = None,
) -> Payload:
    """Someone the model has not learned, known by a few ratings (sent in the request, or
    stored since the last training): fold them in; with none we know, cold start."""
    demoted = _demoted(state, user_id)
    strategy, scored = ratings_list(state, model.lists, items, ratings, k, exclude, genres,
                                    user_id, demoted)  # fmt: skip
    settings = state.settings
    support = settings.cold_start_min_support if strategy == "cold_start" else None
    policy = {
        "min_support": support or settings.fold_in_min_support,
        "narrowed": bool(exclude) or genres is not None,
        **_rotation_json(state, demoted),
    }
    liked = liked_rows(model.recommender, items, ratings)
    return _publish(state, model, user_id, strategy, scored, policy, liked)


def ratings_list(
    state: AppState,
    lists: Ranker,
    items: list[str],
    ratings: list[float],
    k: int,
    exclude: Sequence[str] = (),
    genres: GenreFilter | None = None,
    user_id: str | None = None,
    demoted: dict[str, float] | None = None,
) -> tuple[Strategy, list[Scored]]:
    """`for_ratings`' strategy and list, not logged; `demoted`: the rotation's penalties."""
    allowed = _allowed(state, lists.model, genres)
    exploring = _exploring(state, user_id)
    if not any(lists.model.is_known_item(i) for i in items):
        support = state.settings.cold_start_min_support
        scored = lists.cold_start(
            ListRequest(k, [*exclude, *items], False, support, allowed, exploring, demoted)
        )
        return "cold_start", scored
    support = state.settings.fold_in_min_support
    ask = ListRequest(k, exclude, False, support, allowed, exploring, demoted)
    scored = lists.recommend_for_ratings(items, ratings, ask)
    return "fold_in", scored
