"""What a model says about itself: how it was trained, on what, with what results.

A `ModelCard` travels with the model (`Recommender.card`), in its artifact's manifest, and is
what the CLI, the jobs and the service read instead of keys of a dictionary. Artifacts written
before a field existed load with its default; fields a newer version wrote that this one does
not know are dropped on load (the artifact on disk keeps them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.config import RatingScale
from recsys.train_config import TrainConfig


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DataCounts(_Record):
    """The ratings a model was trained and evaluated on."""

    ratings: int
    users: int
    items: int
    train: int
    """Ratings the networks learned during selection (the training part less validation)."""
    valid: int
    test: int
    fingerprint: str | None = None
    """Of the snapshot (`recsys.data.snapshot.fingerprint`): the baselines' cache key."""
    max_timestamp: int | None = None
    """Newest rating learned (Unix seconds): answers after it were never seen in training."""
    shards: list[int] | None = None
    """Ratings per rank, when trained under torchrun."""


class RankingRecord(_Record):
    """How the ranking head was chosen on validation: its learning curve, kept epochs, blend."""

    history: list[dict[str, Any]] = Field(default_factory=list)
    best_epoch: int | None = None
    member_epochs: list[int] = Field(default_factory=list)
    stopped_early: bool = False
    blend: float = 0.0
    validation_ndcg_by_blend: dict[str, float | None] = Field(default_factory=dict)
    seconds: float = 0.0
    refit_s: float | None = None
    refit_epochs: list[int] = Field(default_factory=list)
    """Epochs each head trained in a refit (the evaluated twin's, the served model's)."""
    refit_warm: bool = False
    """Whether the refits started from the kept heads (fine-tuning) rather than afresh."""

    @property
    def kept_epochs(self) -> list[int]:
        """Each head's kept epoch (one head: the best epoch)."""
        if self.member_epochs:
            return self.member_epochs
        return [self.best_epoch] if self.best_epoch is not None else []


class ServedRecord(_Record):
    """The serving refit: the evaluated twin's recipe trained again on every rating."""

    refit_on_all: bool = True
    ratings: int
    rating_epochs: int
    ranking_epochs: list[int] | None = None
    seconds: float
    note: str = (
        "trained on every rating (test holdout included); metrics are those of the evaluated twin"
    )


class TwinLink(_Record):
    """Where a served model's evaluated twin is kept (an artifact beside it)."""

    artifact: str
    checksum: str


class ModelCard(_Record):
    version: str | None = None
    config: TrainConfig | None = None
    """What it was trained and is judged with; None for a model built by hand."""
    rating_scale: RatingScale | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    """The rating head's learning curve (`EpochStats` as dicts)."""
    refit: dict[str, Any] | None = None
    data: DataCounts | None = None
    device: str | None = None
    samples_per_second: float | None = None
    ranking: RankingRecord | None = None
    metrics: dict[str, Any] | None = None
    """The evaluation report (`Report.to_json`) of the evaluated twin."""
    served: ServedRecord | None = None
    evaluated_twin: TwinLink | None = None

    @field_validator("config", mode="before")
    @classmethod
    def _known_settings(cls, value: Any) -> Any:
        # An artifact keeps the settings of the version that trained it; one since removed
        # must not make the model unreadable.
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k in TrainConfig.model_fields}
        return value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def data_json(self) -> dict[str, Any]:
        """The data counts as the training run's record keeps them ({} when unknown)."""
        return self.data.model_dump(mode="json") if self.data else {}

    @property
    def max_timestamp(self) -> int | None:
        return self.data.max_timestamp if self.data else None
