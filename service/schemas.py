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
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from recsys.data import timestamps
from recsys.store.events import EVENT_KINDS
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
Strategy = Literal["model", "fold_in", "cold_start"]
Basis = Literal["model", "user_bias", "item_bias", "global_mean"]
EventKind = Literal[EVENT_KINDS]  # type: ignore[valid-type]


class Body(BaseModel):
    # Unknown fields are refused: a typo such as "ratng" must not silently do nothing.
    model_config = ConfigDict(extra="forbid")


class ErrorPublic(BaseModel):
    detail: str = Field(description="What is wrong and, where possible, what to do.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="For invalid input: each problem with its location."
    )


GenreName = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]


class RecommendationsQuery(BaseModel):
    """Options of GET /v1/users/{user_id}/recommendations (read by service.query)."""

    k: int = Field(10, ge=1, description="How many items (at most RECSYS_MAX_K).")
    exclude: list[Annotated[str, Field(pattern=NO_NUL)]] = Field(
        [], max_length=1000, description="Item ids never to return."
    )
    include_rated: bool = Field(False, description="Allow items the user rated.")
    min_support: int | None = Field(
        None, ge=1, description="Least training ratings of an item (RECSYS_RECOMMEND_MIN_SUPPORT)."
    )
    genre: list[GenreName] = Field(
        [], max_length=100, description="Only items of any of these genres (repeat the key)."
    )
    exclude_genre: list[GenreName] = Field(
        [], max_length=100, description="No items of these genres (repeat the key)."
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


class RecommendationsPublic(BaseModel):
    recommendation_id: str = Field(
        description="Send it back with feedback so we can tell what our lists led to."
    )
    user_id: str | None
    model_version: str
    strategy: Strategy = Field(
        description="model: learned user; fold_in: fitted to the ratings we have for this "
        "user or in the body; cold_start: best-liked items for someone we know nothing about."
    )
    items: list[RecommendedItem]


class RatingIn(Body):
    item_id: ExternalId
    rating: float = Field(strict=True, allow_inf_nan=False)


class VisitorRecommendationsCreate(Body):
    """A visitor known only by a few ratings (not stored; send feedback to store them)."""

    ratings: list[RatingIn] = Field(min_length=1)
    k: int = Field(10, ge=1)
    exclude: list[ExternalId] = Field(default_factory=list)
    user_id: ExternalId | None = Field(None, description="Logged with the impression only.")


class PredictionPublic(BaseModel):
    user_id: str
    item_id: str
    predicted_rating: float
    basis: Basis = Field(
        description="What the prediction rests on: the learned user and item, only one of "
        "their biases (the other is unknown), or the global mean."
    )
    model_version: str


class PairIn(Body):
    user_id: ExternalId
    item_id: ExternalId


class PredictionsCreate(Body):
    pairs: list[PairIn] = Field(min_length=1)


class PredictionsPublic(BaseModel):
    model_version: str
    predictions: list[PredictionPublic]


class SimilarItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    genres: list[str]
    similarity: float


class SimilarItemsPublic(BaseModel):
    item_id: str
    title: str | None
    model_version: str
    items: list[SimilarItem]


class ItemFields(Body):
    title: str | None = Field(None, max_length=1000, pattern=NO_NUL)
    genres: list[GenreName] | None = Field(None, max_length=100)
    metadata: dict[str, Any] | None = None

    @field_validator("genres")
    @classmethod
    def _no_pipes(cls, genres: list[str] | None) -> list[str] | None:
        if genres and any("|" in g for g in genres):
            raise ValueError("a genre may not contain '|', which separates genres in storage")
        return genres


class ItemCreate(ItemFields):
    item_id: ExternalId


class ItemsCreate(Body):
    items: list[ItemCreate] = Field(min_length=1)


class ItemPublic(BaseModel):
    item_id: str
    title: str | None
    genres: list[str]
    in_model: bool = Field(description="Whether the serving model has learned this item.")
    bias: float | None = Field(description="Learned item bias (logit scale), if in the model.")
    training_ratings: int = Field(description="Ratings of it the serving model learned from.")


class ItemsWritten(BaseModel):
    written: int


class FeedbackCreate(Body):
    user_id: ExternalId
    item_id: ExternalId
    kind: EventKind = "rating"
    # Strict and finite: lax parsing stored `true` as a 1-star rating, and NaN or 1e309
    # (infinity) as values that poison every mean computed over them.
    value: float | None = Field(
        None,
        strict=True,
        allow_inf_nan=False,
        description="The rating, required for kind 'rating'; for other kinds an optional "
        "non-negative weight.",
    )
    recommendation_id: str | None = Field(None, max_length=64, pattern=NO_NUL)
    occurred_at: datetime | None = Field(None, description="Default: when we receive it.")
    event_id: ExternalId | None = Field(
        None, description="Your idempotency key: an event retried with the same key is stored once."
    )

    @model_validator(mode="after")
    def _check(self) -> FeedbackCreate:
        if self.kind == "rating" and self.value is None:
            raise ValueError("a rating needs a value")
        if self.kind != "rating" and self.value is not None and self.value < 0:
            raise ValueError(f"the weight of a {self.kind} event cannot be negative")
        if self.occurred_at is not None:
            try:
                self.occurred_at = timestamps.check(self.occurred_at)
            except ValueError as exc:
                raise ValueError(f"occurred_at {exc}") from None
        return self


class FeedbackBatchCreate(Body):
    events: list[FeedbackCreate] = Field(min_length=1)


def _feedback_shape(value: Any) -> str:
    """One event or a batch, told apart by the `events` key: a plain union reported what was
    wrong against both shapes ("events: Field required" to a client who sent one event)."""
    return "batch" if isinstance(value, dict) and "events" in value else "event"


FeedbackBody = Annotated[
    Annotated[FeedbackCreate, Tag("event")] | Annotated[FeedbackBatchCreate, Tag("batch")],
    Discriminator(_feedback_shape),
]


class FeedbackPublic(BaseModel):
    stored: int
    duplicates: int = Field(description="Events skipped because their event_id was stored before.")
    ratings: int = Field(description="Ratings written to the ratings table.")


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadinessPublic(BaseModel):
    ready: bool
    model_version: str | None = Field(description="The production version this replica serves.")
    registry_version: str | None = Field(
        None, description="The version the registry names as production, when last polled."
    )
    database: bool
    detail: str


class ModelPublic(BaseModel):
    version: str
    status: str
    created_at: UtcDatetime
    promoted_at: UtcDatetime | None
    gate: dict[str, Any] | None
    metrics: dict[str, float | None] | None


class ModelActionPublic(BaseModel):
    action: str
    version: str
    production: str | None = Field(description="What this replica serves now.")
    canary: str | None


class JobPublic(BaseModel):
    id: int
    kind: str
    started_at: UtcDatetime
    finished_at: UtcDatetime | None
    status: str
    decision: str | None
    reasons: list[str] | None
    candidate_version: str | None
    production_version: str | None
    error: str | None
