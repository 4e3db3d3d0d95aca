"""Request and response bodies, named by role: `...Create` comes in, `...Public` goes out.

Ids are strings of any form (MovieLens uses numbers, others use UUIDs or slugs); they are
bounded in length so one request cannot make us hash megabytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from recsys.config import MAX_SUPPORT
from recsys.store.tables import EXTERNAL_ID_LENGTH, ID_SLASH

# PostgreSQL text cannot hold NUL characters; refuse them at the boundary, with a message.
NO_NUL = r"^[^\x00]*$"


def _no_slash(value: str) -> str:
    if "/" in value:
        raise ValueError(f"the id {ID_SLASH}")
    return value


ExternalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=EXTERNAL_ID_LENGTH,
        pattern=NO_NUL,
        description="An id as your system knows it (no NUL, no '/').",
    ),
    AfterValidator(_no_slash),
]
# SQLite hands back naive datetimes (stored as UTC); an API answer always says its zone.
UtcDatetime = Annotated[
    datetime, AfterValidator(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))
]
Strategy = Literal["model", "live", "fold_in", "cold_start"]
Basis = Literal["model", "genres", "user_bias", "item_bias", "global_mean"]


def example(value: dict[str, Any]) -> ConfigDict:
    """A model's example for the OpenAPI document: /docs shows it for the request or the
    answer, and tests/service/test_api.py checks it against the model itself. (A subclass's
    config is merged with its parent's, so request bodies keep `extra="forbid"`.)"""
    return ConfigDict(json_schema_extra={"examples": [value]})


MAX_BODY_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (free-form `metadata`
included): deeper ones could be stored but not written back as JSON."""


def _plain_json(value: Any) -> Any:
    """`value` when every string in it is Unicode text and it nests at most MAX_BODY_DEPTH
    levels; else ValueError. JSON may escape lone surrogates ("\\ud800"), which Python's
    parser accepts but no UTF-8 column or JSON writer does: refused here, not a 500 later.
    Walked with a stack, not recursion: the depth is what is being checked."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    "text holds a lone surrogate escape (such as \\ud800), which is not "
                    "Unicode: send UTF-8 text"
                ) from None
        elif isinstance(item, dict | list):
            if depth > MAX_BODY_DEPTH:
                raise ValueError(f"nested more than {MAX_BODY_DEPTH} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


class Body(BaseModel):
    # Unknown fields are refused: a typo such as "ratng" must not silently do nothing.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, data: Any) -> Any:
        return _plain_json(data)


class ErrorPublic(BaseModel):
    model_config = example(
        {
            "detail": "k: Input should be greater than or equal to 1",
            "errors": [
                {
                    "loc": ["query", "k"],
                    "msg": "Input should be greater than or equal to 1",
                    "type": "greater_than_equal",
                }
            ],
        }
    )

    detail: str = Field(description="What is wrong and, where possible, what to do.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="For invalid input: each problem with its location."
    )


GenreName = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]


class RecommendationsQuery(BaseModel):
    """Options of GET /v1/users/{user_id}/recommendations (read by service.query, which
    shares one parsed query between the requests that send it)."""

    model_config = ConfigDict(frozen=True)

    k: int = Field(10, ge=1, description="How many items (at most RECSYS_MAX_K).")
    exclude: list[Annotated[str, Field(pattern=NO_NUL)]] = Field(
        [], max_length=1000, description="Item ids never to return."
    )
    include_rated: bool = Field(False, description="Allow items the user rated.")
    min_support: int | None = Field(
        None,
        ge=1,
        le=MAX_SUPPORT,
        description="Least training ratings of an item (RECSYS_RECOMMEND_MIN_SUPPORT).",
    )
    genre: list[GenreName] = Field(
        [], max_length=100, description="Only items of any of these genres (repeat the key)."
    )
    exclude_genre: list[GenreName] = Field(
        [], max_length=100, description="No items of these genres (repeat the key)."
    )


class NamedItem(BaseModel):
    item_id: str
    title: str | None


class Because(BaseModel):
    reason: Literal["liked", "popular", "exploration", "new"] = Field(
        description="liked: near items the user liked (`items`, the nearest first, by cosine "
        "similarity of the item factors); popular: chosen by users like them, none of their "
        "liked items being near; exploration: drawn by the exploration policy; new: added "
        "to the catalog after the model was trained, there for its genres (`genres`)."
    )
    items: list[NamedItem] = Field(
        description="With `liked`: up to two of the user's liked items that put it there."
    )
    genres: list[str] = Field(
        [], description="With `new`: the genres the item's vectors come from (new in ...)."
    )


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    genres: list[str]
    score: float = Field(
        description="What the list is ordered by: the ranking score (how likely the user is "
        "to choose the item, plus a share of the rating logit). Higher is better; compare it "
        "within one list only."
    )
    predicted_rating: float | None = Field(
        description="The rating the model predicts, inside the rating scale."
    )
    explored: bool = Field(
        description="Drawn at random from items the model ranks lower (RECSYS_EXPLORE_SHARE of "
        "the slots), so that we learn about them: its score is below the items around it."
    )
    new: bool = Field(
        False,
        description="Added to the catalog after the model was trained: its vectors come from "
        "its genres until the next retrain learns it from its ratings.",
    )
    because: Because = Field(description="Why the item is in the list.")


class RecommendationsPublic(BaseModel):
    model_config = example(
        {
            "recommendation_id": "3f2a9c0d5e8b4f7a9c1d2e3f4a5b6c7d",
            "user_id": "1",
            "model_version": "v20261128-031502-a1b2c3",
            "strategy": "model",
            "items": [
                {
                    "rank": 1,
                    "item_id": "541",
                    "title": "Blade Runner (1982)",
                    "genres": ["Action", "Sci-Fi", "Thriller"],
                    "score": 2.31,
                    "predicted_rating": 3.2,
                    "explored": False,
                    "because": {
                        "reason": "liked",
                        "items": [{"item_id": "1200", "title": "Aliens (1986)"}],
                    },
                },
            ],
        }
    )

    recommendation_id: str = Field(
        description="Send it back with feedback so we can tell what our lists led to."
    )
    user_id: str | None
    model_version: str
    strategy: Strategy = Field(
        description="model: learned user; live: learned user moved by what they sent since "
        "the model was trained; fold_in: fitted to the ratings we have for this user or in "
        "the body; cold_start: best-liked items for someone we know nothing about."
    )
    items: list[RecommendedItem]


class RatingIn(Body):
    item_id: ExternalId
    rating: float = Field(strict=True, allow_inf_nan=False)


class VisitorRecommendationsCreate(Body):
    """A visitor known only by a few ratings (not stored; send feedback to store them)."""

    model_config = example(
        {
            "ratings": [
                {"item_id": "1258", "rating": 5.0},
                {"item_id": "1997", "rating": 5.0},
                {"item_id": "1407", "rating": 4.5},
            ],
            "k": 10,
        }
    )
    ratings: list[RatingIn] = Field(min_length=1)
    k: int = Field(10, ge=1)
    exclude: list[ExternalId] = Field(default_factory=list)
    user_id: ExternalId | None = Field(None, description="Logged with the impression only.")


class PredictionPublic(BaseModel):
    model_config = example(
        {
            "user_id": "1",
            "item_id": "541",
            "predicted_rating": 3.2,
            "basis": "model",
            "model_version": "v20261128-031502-a1b2c3",
        }
    )

    user_id: str
    item_id: str
    predicted_rating: float
    basis: Basis = Field(
        description="What the prediction rests on: the learned user and item; the learned "
        "user and an item added after training, known by its genres; only one of their "
        "biases (the other is unknown), or the global mean."
    )
    model_version: str


class PairIn(Body):
    user_id: ExternalId
    item_id: ExternalId


class PredictionsCreate(Body):
    model_config = example(
        {"pairs": [{"user_id": "1", "item_id": "541"}, {"user_id": "new", "item_id": "1"}]}
    )

    pairs: list[PairIn] = Field(min_length=1)


class PredictionsPublic(BaseModel):
    model_config = example(
        {
            "model_version": "v20261128-031502-a1b2c3",
            "predictions": [
                {
                    "user_id": "1",
                    "item_id": "541",
                    "predicted_rating": 3.2,
                    "basis": "model",
                    "model_version": "v20261128-031502-a1b2c3",
                },
                {
                    "user_id": "new",
                    "item_id": "1",
                    "predicted_rating": 3.9,
                    "basis": "item_bias",
                    "model_version": "v20261128-031502-a1b2c3",
                },
            ],
        }
    )

    model_version: str
    predictions: list[PredictionPublic]


class SimilarItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    genres: list[str]
    similarity: float
    new: bool = Field(
        False, description="Added after the model was trained: its vectors are its genres'."
    )


class SimilarItemsPublic(BaseModel):
    model_config = example(
        {
            "item_id": "1",
            "title": "Toy Story (1995)",
            "model_version": "v20261128-031502-a1b2c3",
            "items": [
                {
                    "rank": 1,
                    "item_id": "3114",
                    "title": "Toy Story 2 (1999)",
                    "genres": ["Adventure", "Animation", "Children", "Comedy", "Fantasy"],
                    "similarity": 0.81,
                }
            ],
        }
    )

    item_id: str
    title: str | None
    model_version: str
    items: list[SimilarItem]
