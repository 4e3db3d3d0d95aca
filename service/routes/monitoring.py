"""Feedback-loop figures as JSON (operator credential), for the dashboard and other tools."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from recsys.data import timestamps
from recsys.lists.because import liked_rows
from recsys.monitoring import floor_to
from service import activity, monitoring_data, serving
from service.auth import OperatorDep
from service.deps import ModelDep, StateDep
from service.errors import OPERATOR_RESPONSES, responses
from service.schemas import NO_NUL

router = APIRouter(
    prefix="/v1/monitoring",
    tags=["monitoring"],
    dependencies=[OperatorDep],
    responses=OPERATOR_RESPONSES,
)


@router.get("/summary")
async def summary(
    state: StateDep,
    hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24.0,
    bucket: Annotated[
        Literal["auto", "10s", "min", "h", "D"],
        Query(description="Time series bucket; auto picks one for the span of the data."),
    ] = "auto",
) -> dict[str, Any]:
    """Counts, production model, last job, loop figures over the window, their time series
    by model version, drift since the production snapshot, and alerts."""
    return await run_in_threadpool(monitoring_data.summary, state, hours, bucket)


@router.get("/curves", responses=responses(404))
async def curves(
    state: StateDep,
    versions: Annotated[list[str], Query(min_length=1, max_length=20)],
) -> dict[str, Any]:
    """Learning curves and test metrics (with baselines) of the versions named."""
    return await run_in_threadpool(monitoring_data.curves, state, versions)


@router.get(
    "/off-policy",
    responses={
        **responses(404),
        202: {"description": "No report yet: it is being computed; ask again after Retry-After."},
    },
)
async def off_policy(
    state: StateDep,
    response: Response,
    version: Annotated[
        str, Query(min_length=1, max_length=64, description="A version, or an alias: canary.")
    ] = "canary",
    hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24.0 * 7,
    explore: Annotated[
        float | None,
        Query(ge=0, lt=1, description="Exploration share it would serve with (default: ours)."),
    ] = None,
) -> dict[str, Any]:
    """What `version` would have earned on the lists logged over the window (positive
    feedback per slot by IPS, SNIPS and DR with 95 % intervals, effective sample size, largest
    weight), beside each logging version's observed rate; `refused` says why there is no
    estimate (exploration was off, too little traffic).

    Reports are computed in the background and answered from there: the newest one at once
    (`computed_at`, `age_s`; one older than 5 minutes is computed again meanwhile, and
    `refreshing` says so). Before the first is ready the answer is 202 with `status:
    "computing"` and a Retry-After header."""
    report = await run_in_threadpool(monitoring_data.off_policy, state, version, hours, explore)
    if report.get("status") == "computing":
        response.status_code = 202
        response.headers["Retry-After"] = str(report["retry_after_s"])
    return report


@router.get("/items")
def search(
    state: StateDep, q: Annotated[str, Query(min_length=1, max_length=200)]
) -> list[dict[str, str | None]]:
    """Items whose title contains `q`."""
    return activity.search_items(state, q)


@router.get("/items/{item_id}", responses=responses(404))
def item(
    item_id: Annotated[str, Path(min_length=1, max_length=255, pattern=NO_NUL)],
    state: StateDep,
    model: ModelDep,
    hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24.0 * 7,
) -> dict[str, Any]:
    """An item's learned bias, nearest items, and its exposure (times shown) per hour."""
    rec = model.recommender
    if not rec.is_known_item(item_id):
        raise HTTPException(404, f"item {item_id!r} is not in the serving model")
    row = rec.item_vocab.index(item_id)
    served, _ = activity.served_since(state, hours)
    per_hour = Counter(floor_to(x.served_at, "h") for x in served if item_id in x.items)
    catalog = state.models.catalog
    return {
        "item_id": item_id,
        "title": catalog.get(item_id)[0],
        "genres": catalog.get(item_id)[1],
        "bias": float(rec.item_bias[row]),
        "training_ratings": int(rec.item_counts[row]),
        "similar": [
            {"item_id": x.item_id, "title": catalog.get(x.item_id)[0], "similarity": x.score}
            for x in model.similar.similar(
                item_id, 10, min_support=state.settings.similar_min_support
            )
        ],
        "exposure": [
            {"period": timestamps.iso(k), "shown": v} for k, v in sorted(per_hour.items())
        ],
    }


@router.get("/item-map")
def item_map(
    state: StateDep, model: ModelDep, n: Annotated[int, Query(ge=10, le=20_000)] = 2000
) -> dict[str, Any]:
    """The `n` most rated items placed by the first two principal components of their
    factors, with their popularity: do popular items sit apart from the rest?"""
    rec = model.recommender
    rows = np.argsort(-rec.item_counts, kind="stable")[:n]
    rows = rows[rec.item_counts[rows] > 0]
    factors = rec.item_factors[rows].astype(np.float64)
    centred = factors - factors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    ids = rec.item_vocab.ids_of(rows.tolist())
    return {
        "item_id": ids,
        "title": [state.models.catalog.get(i)[0] for i in ids],
        "x": xy[:, 0].round(4).tolist(),
        "y": xy[:, 1].round(4).tolist(),
        "popularity": rec.item_counts[rows].tolist(),
    }


@router.get("/users/{user_id}", responses=responses(404))
def user(
    user_id: Annotated[str, Path(min_length=1, max_length=255, pattern=NO_NUL)],
    state: StateDep,
    model: ModelDep,
) -> dict[str, Any]:
    """One user, as the operator needs to see them: their latest ratings, the list they get
    now (strategy, scores, the version serving them), the lists we served them and the
    feedback they gave on those lists."""
    model_now = state.models.for_user(user_id, model)
    rec = model_now.recommender
    seen = activity.of_user(state, user_id)
    history, lists, answers = seen.rated, seen.lists, seen.answers
    if not rec.is_known_user(user_id) and not history and not lists:
        raise HTTPException(404, f"user {user_id!r} has no ratings, lists or learned vector")
    # The list they would get now, as serving builds it but not logged as an impression: an
    # operator looking is no exposure. Their ratings since the model are no candidates.
    rated = [h["item_id"] for h in history]
    if rec.is_known_user(user_id):
        strategy, scored, liked = serving.known_user_list(
            state, model_now.lists, user_id, 10, exclude=rated, include_rated=False,
            min_support=state.settings.recommend_min_support,
        )  # fmt: skip
    else:
        ratings = [h["rating"] for h in history]
        strategy, scored = serving.ratings_list(
            state, model_now.lists, rated, ratings, 10, user_id=user_id
        )
        liked = liked_rows(rec, rated, ratings)
    return {
        "user_id": user_id,
        "in_model": rec.is_known_user(user_id),
        "served_by": model_now.version,
        "strategy": strategy,
        "recommendations": serving.listed(state, rec, scored, liked),
        "ratings": [{**h, "rated_at": timestamps.iso_seconds(h["rated_at"])} for h in history],
        "lists": [{**r, "served_at": timestamps.iso(r["served_at"])} for r in lists],
        "feedback": [{**a, "received_at": timestamps.iso(a["received_at"])} for a in answers],
    }
