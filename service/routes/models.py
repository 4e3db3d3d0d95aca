"""Operator actions on the registry and the retraining job (operator credential required)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from recsys import monitoring, registry
from service import activity
from service.auth import OperatorDep, acting_operator
from service.deps import StateDep
from service.errors import BODY, OPERATOR_RESPONSES, responses
from service.schemas import NO_NUL
from service.schemas_ops import (
    JobPublic,
    ModelActionCreate,
    ModelActionPublic,
    ModelActionRecord,
    ModelPublic,
)
from service.state import AppState

router = APIRouter(
    prefix="/v1",
    tags=["operator"],
    dependencies=[OperatorDep],
    responses=OPERATOR_RESPONSES,
)

ReasonBody = Annotated[ModelActionCreate | None, Body()]
VersionPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=NO_NUL,
        description="A version, or production/canary/latest.",
    ),
]


def _public(row: Any) -> ModelPublic:
    metrics = row["metrics"] or {}
    return ModelPublic(
        version=row["version"],
        status=row["status"],
        created_at=row["created_at"],
        promoted_at=row["promoted_at"],
        gate=metrics.get("gate"),
        metrics=(metrics.get("report") or {}).get("model"),
    )


@router.get("/models")
def list_models(state: StateDep) -> list[ModelPublic]:
    """Model versions, newest first."""
    return [_public(r) for r in registry.list_versions(state.engine)]


@router.get("/models/online")
def online_metrics(
    state: StateDep, hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24.0
) -> dict[str, dict[str, Any]]:
    """Per version, over the last `hours`: lists served, feedback answering them, positive
    share and prediction bias on it. How a canary compares with production, online."""
    served, feedback = activity.served_since(state, hours)
    return monitoring.online_by_version(
        served, feedback, liked_threshold=state.settings.liked_threshold
    )


@router.get("/models/history")
def model_history(
    state: StateDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[ModelActionRecord]:
    """The registry's audit trail, newest first: who promoted, approved, rejected or rolled
    back which version, from which production version, when and why."""
    return [
        ModelActionRecord.model_validate(dict(r)) for r in registry.history(state.engine, limit)
    ]


@router.get("/models/{version}", responses=responses(404))
def get_model(version: VersionPath, state: StateDep) -> ModelPublic:
    return _public(registry.resolve(state.engine, version))


def _actor(request: Request, body: ModelActionCreate | None) -> registry.Actor:
    return registry.Actor(acting_operator(request), body.reason if body else None)


def _act(state: AppState, version: str, action: str, actor: registry.Actor) -> ModelActionPublic:
    name = registry.resolve(state.engine, version)["version"]
    {"approve": registry.approve, "reject": registry.reject, "promote": registry.promote}[action](
        state.engine, name, actor=actor
    )
    # Apply it in this process now; other replicas follow within the reload interval.
    state.models.refresh()
    return ModelActionPublic(
        action=action,
        version=name,
        production=state.models.version,
        canary=state.models.canary_version,
    )


@router.post("/models/{version}/approve", responses=responses(404, 409, *BODY))
async def approve(
    version: VersionPath, state: StateDep, request: Request, body: ReasonBody = None
) -> ModelActionPublic:
    """A candidate waiting for approval (or a canary) becomes production."""
    return await run_in_threadpool(_act, state, version, "approve", _actor(request, body))


@router.post("/models/{version}/reject", responses=responses(404, 409, *BODY))
async def reject(
    version: VersionPath, state: StateDep, request: Request, body: ReasonBody = None
) -> ModelActionPublic:
    """Reject a candidate, or stop a canary."""
    return await run_in_threadpool(_act, state, version, "reject", _actor(request, body))


@router.post("/models/{version}/promote", responses=responses(404, 409, *BODY))
async def promote(
    version: VersionPath, state: StateDep, request: Request, body: ReasonBody = None
) -> ModelActionPublic:
    """Make any version production now."""
    return await run_in_threadpool(_act, state, version, "promote", _actor(request, body))


@router.post("/models/rollback", responses=responses(404, 409, *BODY))
async def rollback(state: StateDep, request: Request, body: ReasonBody = None) -> ModelActionPublic:
    """Put the previous production version back; the current one is rejected."""
    actor = _actor(request, body)

    def run() -> ModelActionPublic:
        _, to = registry.rollback(state.engine, actor=actor)
        state.models.refresh()
        return ModelActionPublic(
            action="rollback", version=to, production=state.models.version,
            canary=state.models.canary_version,
        )  # fmt: skip

    return await run_in_threadpool(run)


@router.get("/jobs")
def list_jobs(state: StateDep, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[JobPublic]:
    """Recent runs of the retraining job, with their decisions and reasons."""
    return [
        JobPublic.model_validate({**r, "checks": (r["comparison"] or {}).get("checks") or []})
        for r in registry.list_jobs(state.engine, limit)
    ]
