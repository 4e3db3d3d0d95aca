"""Training runs and model versions in the database.

A version's status is one of candidate, production, retired, rejected. At most one version is
in production; promotion retires the previous one in the same transaction.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, select, update
from sqlalchemy.orm import Session

from recsys.errors import NoModelError, NotFoundError
from recsys.store.db import session_scope
from recsys.store.tables import model_versions, training_runs

CANDIDATE, PRODUCTION, RETIRED, REJECTED = "candidate", "production", "retired", "rejected"


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
    """Make `version` the production model and retire the previous one, atomically."""
    with session_scope(engine) as s:
        _get(s, version)
        s.execute(
            update(model_versions)
            .where(model_versions.c.status == PRODUCTION)
            .values(status=RETIRED)
        )
        s.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(status=PRODUCTION, promoted_at=now())
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
    """A named version, else production, else the newest version."""
    if version:
        return get_version(engine, version)
    row = production(engine)
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
