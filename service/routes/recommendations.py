"""Top-k lists: for a user, and for a visitor described by a few ratings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from recsys.store.tables import EXTERNAL_ID_LENGTH
from service import serving
from service.auth import ReaderDep
from service.deps import ModelDep, StateDep, as_json, check_batch, check_k, check_rating
from service.errors import CLIENT_RESPONSES
from service.schemas import NO_NUL, RecommendationsPublic, VisitorRecommendationsCreate

router = APIRouter(
    prefix="/v1", tags=["recommendations"], responses=CLIENT_RESPONSES, dependencies=[ReaderDep]
)

UserPath = Annotated[str, Path(min_length=1, max_length=EXTERNAL_ID_LENGTH, pattern=NO_NUL)]


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsPublic)
async def user_recommendations(
    user_id: UserPath,
    state: StateDep,
    model: ModelDep,
    k: Annotated[int, Query(ge=1, description="How many items (at most RECSYS_MAX_K).")] = 10,
    exclude: Annotated[
        list[Annotated[str, Field(pattern=NO_NUL)]],
        Query(max_length=1000, description="Item ids never to return."),
    ] = [],  # noqa: B006 - FastAPI copies query defaults per request
    include_rated: Annotated[bool, Query(description="Allow items the user rated.")] = False,
    min_support: Annotated[
        int | None,
        Query(
            ge=1, description="Least training ratings of an item (RECSYS_RECOMMEND_MIN_SUPPORT)."
        ),
    ] = None,
) -> Response:
    """Top-k items for a user, best first. A user the model has not learned gets items folded
    in from the ratings they sent since the last training, or the cold-start list."""
    check_k(k, state.settings)
    model = state.models.for_user(user_id, model)
    if model.recommender.is_known_user(user_id):
        support = min_support or state.settings.recommend_min_support
        answer = serving.for_known_user(
            state,
            model,
            user_id,
            k,
            exclude=exclude,
            include_rated=include_rated,
            min_support=support,
        )
    else:
        items, ratings = await run_in_threadpool(serving.stored_ratings, state, user_id)
        answer = serving.for_ratings(state, model, user_id, items, ratings, k, exclude)
    return as_json(answer)


@router.post("/recommendations", response_model=RecommendationsPublic)
async def visitor_recommendations(
    body: VisitorRecommendationsCreate, state: StateDep, model: ModelDep
) -> Response:
    """Recommendations for a visitor known only by the ratings in the body: a user vector and
    bias are fitted against the frozen item factors (no retraining). Nothing is stored."""
    check_k(body.k, state.settings)
    check_batch(len(body.ratings), state.settings, "ratings")
    for n, r in enumerate(body.ratings):
        check_rating(r.rating, state.settings, f"ratings.{n}")
    return as_json(
        serving.for_ratings(
            state,
            state.models.for_user(body.user_id, model),
            body.user_id,
            [r.item_id for r in body.ratings],
            [r.rating for r in body.ratings],
            body.k,
            body.exclude,
        )
    )
