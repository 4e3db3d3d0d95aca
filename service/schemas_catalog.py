"""Bodies of the catalog and feedback endpoints: items in, items out, feedback events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from recsys.data import timestamps
from recsys.store.events import EVENT_KINDS
from service.schemas import NO_NUL, Body, ExternalId, GenreName, example

EventKind = Literal[EVENT_KINDS]  # type: ignore[valid-type]

MAX_METADATA_BYTES = 65_536


class ItemFields(Body):
    model_config = example({"title": "A new film (2026)", "genres": ["Horror", "Drama"]})

    title: str | None = Field(None, max_length=1000, pattern=NO_NUL)
    genres: list[GenreName] | None = Field(None, max_length=100)
    metadata: dict[str, Any] | None = Field(
        None, description="Free-form JSON kept with the item (at most 64 KB written as JSON)."
    )

    @field_validator("metadata")
    @classmethod
    def _small(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if metadata is not None and len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise ValueError(f"more than {MAX_METADATA_BYTES:,} bytes as JSON")
        return metadata

    @field_validator("genres")
    @classmethod
    def _no_pipes(cls, genres: list[str] | None) -> list[str] | None:
        if genres and any("|" in g for g in genres):
            raise ValueError("a genre may not contain '|', which separates genres in storage")
        return genres


class ItemCreate(ItemFields):
    model_config = example(
        {"item_id": "200001", "title": "A new film (2026)", "genres": ["Horror", "Drama"]}
    )

    item_id: ExternalId


class ItemsCreate(Body):
    model_config = example(
        {"items": [{"item_id": "200001", "title": "A new film (2026)", "genres": ["Horror"]}]}
    )

    items: list[ItemCreate] = Field(min_length=1)


class ItemPublic(BaseModel):
    model_config = example(
        {
            "item_id": "1",
            "title": "Toy Story (1995)",
            "genres": ["Adventure", "Animation"],
            "in_model": True,
            "new": False,
            "bias": 0.61,
            "training_ratings": 247,
        }
    )

    item_id: str
    title: str | None
    genres: list[str]
    in_model: bool = Field(
        description="Whether the serving model has vectors for this item: learned, or from "
        "its genres when `new`."
    )
    new: bool = Field(
        False,
        description="Added after the serving model was trained: it is listed, predicted and "
        "found similar by its genres' vectors until a retrain learns it from its ratings.",
    )
    bias: float | None = Field(description="Item bias (logit scale), if in the model.")
    training_ratings: int = Field(description="Ratings of it the serving model learned from.")


class ItemsWritten(BaseModel):
    model_config = example({"written": 1})

    written: int


class FeedbackCreate(Body):
    model_config = example(
        {
            "user_id": "1",
            "item_id": "541",
            "kind": "rating",
            "value": 4.5,
            "recommendation_id": "3f2a9c0d5e8b4f7a9c1d2e3f4a5b6c7d",
            "event_id": "client-7f3e-0001",
        }
    )

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
    model_config = example(
        {
            "events": [
                {"user_id": "1", "item_id": "541", "kind": "click"},
                {"user_id": "1", "item_id": "1", "value": 4.0},
            ]
        }
    )

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
    model_config = example({"stored": 2, "duplicates": 0, "ratings": 1})

    stored: int
    duplicates: int = Field(description="Events skipped because their event_id was stored before.")
    ratings: int = Field(description="Ratings written to the ratings table.")
