"""Bodies of the operator endpoints: health, readiness, model versions and their actions,
retraining jobs, CSV ingestion."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from service.schemas import NO_NUL, Body, UtcDatetime, example


class HealthPublic(BaseModel):
    model_config = example({"status": "ok"})

    status: Literal["ok"]


class ReadinessPublic(BaseModel):
    model_config = example(
        {
            "ready": True,
            "model_version": "v20261128-031502-a1b2c3",
            "registry_version": "v20261128-031502-a1b2c3",
            "database": True,
            "detail": "serving the production model",
        }
    )

    ready: bool
    model_version: str | None = Field(description="The production version this replica serves.")
    registry_version: str | None = Field(
        None, description="The version the registry names as production, when last polled."
    )
    database: bool
    detail: str


class ModelPublic(BaseModel):
    model_config = example(
        {
            "version": "v20261128-031502-a1b2c3",
            "status": "production",
            "created_at": "2026-11-28T03:15:02Z",
            "promoted_at": "2026-11-28T03:15:09Z",
            "gate": {"passed": True, "reasons": [], "warnings": []},
            "metrics": {"rmse": 0.859, "ndcg@10": 0.231, "coverage": 0.07},
        }
    )

    version: str
    status: str
    created_at: UtcDatetime
    promoted_at: UtcDatetime | None
    gate: dict[str, Any] | None
    metrics: dict[str, float | None] | None


class ModelActionCreate(Body):
    model_config = example({"reason": "offline NDCG up 4 %, canary positive rate level"})

    reason: str | None = Field(
        None,
        max_length=1000,
        pattern=NO_NUL,
        description="Why: kept in the audit trail with who acted (GET /v1/models/history).",
    )


class ModelActionRecord(BaseModel):
    """One entry of the registry's audit trail."""

    model_config = example(
        {
            "at": "2026-11-28T09:12:44Z",
            "actor": "key ops-alice",
            "action": "promote",
            "from_version": "v20261127-031501-9f8e7d",
            "to_version": "v20261128-031502-a1b2c3",
            "reason": "offline NDCG up 4 %",
        }
    )
    at: UtcDatetime
    actor: str = Field(description='"operator token", "key NAME", or the job or command.')
    action: str
    from_version: str | None = Field(description="Production before the action.")
    to_version: str | None = Field(description="The version acted on.")
    reason: str | None


class ModelActionPublic(BaseModel):
    model_config = example(
        {
            "action": "promote",
            "version": "v20261128-031502-a1b2c3",
            "production": "v20261128-031502-a1b2c3",
            "canary": None,
        }
    )

    action: str
    version: str
    production: str | None = Field(description="What this replica serves now.")
    canary: str | None = None


class GateCheckPublic(BaseModel):
    gate: str
    passed: bool | None = Field(None, description="null: not applied (the detail says why).")
    detail: str


class JobPublic(BaseModel):
    model_config = example(
        {
            "id": 12,
            "kind": "retrain",
            "started_at": "2026-11-28T03:00:00Z",
            "finished_at": "2026-11-28T03:15:10Z",
            "status": "succeeded",
            "decision": "promoted",
            "reasons": [],
            "candidate_version": "v20261128-031502-a1b2c3",
            "production_version": "v20261127-031501-9f8e7d",
            "error": None,
            "checks": [
                {
                    "gate": "ndcg_vs_production",
                    "passed": True,
                    "detail": "NDCG@10 0.2510 is within production's 0.2490 - 0.01",
                },
                {
                    "gate": "off_policy",
                    "passed": None,
                    "detail": "off-policy gate not applied: effective sample size 203 below "
                    "1000 (RECSYS_GATE_OPE_MIN_ESS)",
                },
            ],
        }
    )

    id: int
    kind: str
    started_at: UtcDatetime
    finished_at: UtcDatetime | None
    status: str
    decision: str | None
    reasons: list[str] | None
    candidate_version: str | None
    production_version: str | None
    error: str | None = None
    checks: list[GateCheckPublic] = Field(
        default_factory=list,
        description="Every gate the candidate went through, passed ones included.",
    )


class IngestPublic(BaseModel):
    model_config = example(
        {
            "rows": 1000,
            "new_ratings": 980,
            "ratings_before": 100004,
            "ratings_after": 100984,
            "seconds": 0.41,
        }
    )

    rows: int
    new_ratings: int = Field(description="Ratings that did not exist before (others updated).")
    ratings_before: int
    ratings_after: int
    seconds: float
