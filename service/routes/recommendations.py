"""Top-k lists: for a user, and for a visitor described by a few ratings."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from service import serving
from service.auth import API_KEY_HEADER
from service.catalog import GenreFilter
from service.deps import (
    GenreQuery,
    ReadingDep,
    check_batch,
    check_k,
    check_rating,
    json_response,
    read_access,
)
from service.errors import BODY, CLIENT_RESPONSES, responses
from service.query import openapi_parameters, parse_query, path_value
from service.schemas import (
    ExternalId,
    RecommendationsPublic,
    RecommendationsQuery,
    VisitorRecommendationsCreate,
)

# Every route checks the reader's key: through ReadingDep, or read_access.
router = APIRouter(prefix="/v1", tags=["recommendations"], responses=CLIENT_RESPONSES)

USER_ID = TypeAdapter(ExternalId)


@router.get(
    "/users/{user_id}/recommendations",
    response_model=RecommendationsPublic,
    openapi_extra=openapi_parameters(
        RecommendationsQuery, API_KEY_HEADER, path={"user_id": USER_ID}
    ),
)
async def user_recommendations(request: Request) -> Response:
    """Top-k items for a user, best first. A user the model has not learned gets items folded
    in from the ratings they sent since the last training, or the cold-start list."""
    # The hottest route reads its path and options itself (service.query): declared one by
    # one, they and the reader dependency cost FastAPI more than the recommendation.
    reading = read_access(request)
    user_id = path_value(request, "user_id", USER_ID)
    options = parse_query(request, RecommendationsQuery)
    state = reading.state
    check_k(options.k, state.settings)
    model = state.models.for_user(user_id, reading.model)
    genres = GenreFilter.of(options.genre, options.exclude_genre)
    if model.recommender.is_known_user(user_id):
        answer = await serving.for_known_user(
            state,
            model,
            user_id,
            options.k,
            exclude=options.exclude,
            include_rated=options.include_rated,
            min_support=options.min_support or state.settings.recommend_min_support,
            genres=genres,
        )
    else:
        items, ratings = await run_in_threadpool(serving.stored_ratings, state, user_id)
        answer = serving.for_ratings(
            state, model, user_id, items, ratings, options.k, options.exclude, genres
        )
    return json_response(answer)


@router.post("/recommendations", response_model=RecommendationsPublic, responses=responses(*BODY))
async def visitor_recommendations(
    body: VisitorRecommendationsCreate,
    reading: ReadingDep,
    genre: GenreQuery = [],  # noqa: B006  # FastAPI copies defaults per request
    exclude_genre: GenreQuery = [],  # noqa: B006
) -> Response:
    """Recommendations for a visitor known only by the ratings in the body: a user vector and
    bias are fitted against the frozen item factors (no retraining). Nothing is stored."""
    state = reading.state
    check_k(body.k, state.settings)
    check_batch(len(body.ratings), state.settings, "ratings")
    for n, r in enumerate(body.ratings):
        check_rating(r.rating, state.settings, f"ratings.{n}")
    return json_response(
        serving.for_ratings(
            state,
            state.models.for_user(body.user_id, reading.model),
            body.user_id,
            [r.item_id for r in body.ratings],
            [r.rating for r in body.ratings],
            body.k,
            body.exclude,
            GenreFilter.of(genre, exclude_genre),
        )
    )
