"""Training runs and model versions in the database.

A version's status is one of candidate, canary, production, retired, rejected. At most one
version is in production and one in canary; promotion retires the previous production version
in the same transaction, rollback brings it back and rejects the one rolled back. The names
`production`, `canary` and `latest` work wherever a version is asked for.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, select, update
from sqlalchemy.orm import Session

from recsys.errors import NoModelError, NotFoundError, StateConflictError
from recsys.store.db import session_scope
from recsys.store.tables import model_versions, training_runs

CANDIDATE, CANARY, PRODUCTION = "candidate", "canary", "production"
RETIRED, REJECTED = "retired", "rejected"
ALIASES = (PRODUCTION, CANARY, "latest")


def now() -> datetime:
    return datetime.now(UTC)


def new_version_name() -> str:
    """Sortable by time, unique across machines: v20261122-051234-3fa9c1."""
    return f"v{now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def start_run(engine: Engine, config: dict[str, Any]) -> int:
    with session_scope(engine) as s:
        run_id = s.execute(
            training_runs.insert()
            .values(started_at=now(), status="running", config=config, history=[])
            .returning(training_runs.c.id)
        ).scalar_one()
        return int(run_id)


def finish_run(engine: Engine, run_id: int, *, status: str, **fields: Any) -> None:
    with session_scope(engine) as s:
        s.execute(
            update(training_runs)
            .where(training_runs.c.id == run_id)
            .values(status=status, finished_at=now(), **fields)
        )


def register_version(
    engine: Engine,
    *,
    version: str,
    run_id: int | None,
    artifact_path: str,
    checksum: str,
    metrics: dict[str, Any],
    status: str = CANDIDATE,
) -> None:
    with session_scope(engine) as s:
        s.execute(
            model_versions.insert().values(
                version=version,
                training_run_id=run_id,
                artifact_path=artifact_path,
                checksum=checksum,
                status=status,
                metrics=metrics,
                created_at=now(),
            )
        )


def _get(s: Session, version: str) -> RowMapping:
    row = (
        s.execute(select(model_versions).where(model_versions.c.version == version))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"model version {version!r} does not exist (see: recsys models list)")
    return row


def get_version(engine: Engine, version: str) -> RowMapping:
    with session_scope(engine) as s:
        return _get(s, version)


def promote(engine: Engine, version: str) -> None:
    """Make `version` the production model and retire the previous one (and any other
    canary), atomically."""
    with session_scope(engine) as s:
        _get(s, version)
        s.execute(
            update(model_versions)
            .where(model_versions.c.status.in_([PRODUCTION, CANARY]))
            .where(model_versions.c.version != version)
            .values(status=RETIRED)
        )
        s.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(status=PRODUCTION, promoted_at=now())
        )


def start_canary(engine: Engine, version: str) -> None:
    """Serve `version` to the canary share of users; a previous canary is retired."""
    with session_scope(engine) as s:
        if _get(s, version)["status"] == PRODUCTION:
            raise StateConflictError(f"{version} is already in production")
        s.execute(
            update(model_versions).where(model_versions.c.status == CANARY).values(status=RETIRED)
        )
        s.execute(
            update(model_versions).where(model_versions.c.version == version).values(status=CANARY)
        )


def approve(engine: Engine, version: str) -> None:
    """An operator's yes: a candidate (or canary) becomes production."""
    status = get_version(engine, version)["status"]
    if status not in (CANDIDATE, CANARY):
        raise StateConflictError(
            f"{version} is {status}; only a candidate or canary can be approved"
        )
    promote(engine, version)


def reject(engine: Engine, version: str) -> None:
    status = get_version(engine, version)["status"]
    if status not in (CANDIDATE, CANARY):
        raise StateConflictError(
            f"{version} is {status}; only a candidate or canary can be rejected"
        )
    set_status(engine, version, REJECTED)


def rollback(engine: Engine) -> tuple[str, str]:
    """Back to the version that was in production before this one, atomically; the current
    one is rejected, so a second rollback goes one further back. Returns (from, to)."""
    with session_scope(engine) as s:
        current = (
            s.execute(select(model_versions).where(model_versions.c.status == PRODUCTION))
            .mappings()
            .first()
        )
        if current is None:
            raise NoModelError("nothing is in production: nothing to roll back")
        previous = (
            s.execute(
                select(model_versions)
                .where(model_versions.c.status == RETIRED)
                .where(model_versions.c.promoted_at.is_not(None))
                .order_by(model_versions.c.promoted_at.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if previous is None:
            raise NotFoundError(
                f"no earlier production version to roll back to from {current['version']}"
            )
        s.execute(
            update(model_versions)
            .where(model_versions.c.version == current["version"])
            .values(status=REJECTED)
        )
        s.execute(
            update(model_versions)
            .where(model_versions.c.version == previous["version"])
            .values(status=PRODUCTION, promoted_at=now())
        )
        return current["version"], previous["version"]


def canary(engine: Engine) -> RowMapping | None:
    with session_scope(engine) as s:
        return (
            s.execute(select(model_versions).where(model_versions.c.status == CANARY))
            .mappings()
            .first()
        )


def set_status(engine: Engine, version: str, status: str) -> None:
    with session_scope(engine) as s:
        _get(s, version)
        s.execute(
            update(model_versions).where(model_versions.c.version == version).values(status=status)
        )


def production(engine: Engine) -> RowMapping | None:
    with session_scope(engine) as s:
        return (
            s.execute(select(model_versions).where(model_versions.c.status == PRODUCTION))
            .mappings()
            .first()
        )


def resolve(engine: Engine, version: str | None) -> RowMapping:
    """A named version or alias, else production, else the newest version."""
    if version == CANARY:
        row = canary(engine)
        if row is None:
            raise NotFoundError("no version is in canary")
        return row
    if version == PRODUCTION:
        row = production(engine)
        if row is None:
            raise NoModelError("no version is in production: run `recsys train`")
        return row
    if version and version != "latest":
        return get_version(engine, version)
    row = production(engine) if version is None else None
    if row is not None:
        return row
    with session_scope(engine) as s:
        row = (
            s.execute(select(model_versions).order_by(model_versions.c.id.desc()).limit(1))
            .mappings()
            .first()
        )
    if row is None:
        raise NoModelError("no model has been trained yet: run `recsys train`")
    return row


def list_versions(engine: Engine, limit: int = 50) -> list[RowMapping]:
    with session_scope(engine) as s:
        return list(
            s.execute(
                select(model_versions).order_by(model_versions.c.id.desc()).limit(limit)
            ).mappings()
        )


def get_run(engine: Engine, run_id: int) -> RowMapping | None:
    with session_scope(engine) as s:
        return (
            s.execute(select(training_runs).where(training_runs.c.id == run_id)).mappings().first()
        )
