"""Training runs, retraining jobs and model versions in the database.

A version's status is one of candidate, canary, production, retired, rejected. At most one
version is in production and one in canary; promotion retires the previous production version
in the same transaction, rollback brings it back and rejects the one rolled back. The names
`production`, `canary` and `latest` work wherever a version is asked for.

Every change of status is one transaction that first waits for the registry's lock
(`changing`), then reads the status it judges and writes the new one: two operators, or an
operator and the nightly job, acting at once are applied one after the other, and the second
is judged on what the first left. Partial unique indexes (migration 0005) make a second
production or canary row impossible whatever the code does. A version becomes production or
canary only after its artifact passed its checksum and loaded (`check_servable`).
"""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, RowMapping, select, update
from sqlalchemy.orm import Session

from recsys.errors import ArtifactError, NoModelError, NotFoundError, StateConflictError
from recsys.locks import wait_for_turn
from recsys.store.db import session_scope
from recsys.store.tables import jobs, model_actions, model_versions, training_runs

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


@contextmanager
def training_run(engine: Engine, config: dict[str, Any]) -> Iterator[int]:
    """A training run's record, open for the block: whatever fails inside (fitting, saving
    the artifact on a full disk, registering) closes it as failed with the error, so no run
    stays 'running' after its process went on. The block closes it as succeeded itself
    (`finish_run`), with its figures."""
    run_id = start_run(engine, config)
    try:
        yield run_id
    except BaseException as exc:
        error = "".join(traceback.format_exception_only(exc)).strip()
        finish_run(engine, run_id, status="failed", error=error)
        raise


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


class UnservableVersionError(StateConflictError):
    """The version's artifact is missing, corrupt or unreadable: it cannot be served."""


def check_servable(row: RowMapping) -> None:
    """Refuse a version whose artifact would not load: promoting it would leave the registry
    naming a production model that no replica can serve (503 for everyone after a restart).
    Checks the checksum and loads the tensors, as a replica would."""
    from recsys.model import artifact  # torch and the model code: only for these actions

    try:
        artifact.load(Path(row["artifact_path"]), row["checksum"])
    except (ArtifactError, OSError) as exc:
        raise UnservableVersionError(
            f"{row['version']} cannot be served, nothing was changed: {exc}"
        ) from exc


@contextmanager
def changing(engine: Engine) -> Iterator[Session]:
    """A transaction holding the registry's lock: status read in it stays true until it
    commits."""
    with session_scope(engine) as s:
        wait_for_turn(s, "registry")
        yield s


@dataclass(frozen=True)
class Actor:
    """Who acts on the registry, and why: what the audit trail records beside the action."""

    name: str
    """"operator token", "key NAME", or the command or job that acted."""
    reason: str | None = None


SYSTEM = Actor("system")


def _record(s: Session, action: str, version: str | None, actor: Actor) -> None:
    """One row of the audit trail, in the action's own transaction: the trail holds exactly
    the actions that happened."""
    before = s.scalar(select(model_versions.c.version).where(model_versions.c.status == PRODUCTION))
    s.execute(
        model_actions.insert().values(
            at=now(),
            actor=actor.name[:200],
            action=action,
            from_version=before,
            to_version=version,
            reason=actor.reason,
        )
    )


def history(engine: Engine, limit: int = 50) -> list[RowMapping]:
    """The latest registry actions, newest first."""
    with session_scope(engine) as s:
        return list(
            s.execute(
                select(model_actions).order_by(model_actions.c.id.desc()).limit(limit)
            ).mappings()
        )


def _make_production(s: Session, version: str) -> None:
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


def promote(engine: Engine, version: str, *, check: bool = True, actor: Actor = SYSTEM) -> None:
    """Make `version` the production model and retire the previous one (and any canary), in
    one transaction. `check=False` is for a version just saved and verified by its writer."""
    if check:
        check_servable(get_version(engine, version))
    with changing(engine) as s:
        if _get(s, version)["status"] == PRODUCTION:
            return  # nothing happens, so nothing is recorded
        _record(s, "promote", version, actor)
        _make_production(s, version)


def start_canary(
    engine: Engine, version: str, *, check: bool = True, actor: Actor = SYSTEM
) -> None:
    """Serve `version` to the canary share of users; a previous canary is retired."""
    if check:
        check_servable(get_version(engine, version))
    with changing(engine) as s:
        if _get(s, version)["status"] == PRODUCTION:
            raise StateConflictError(f"{version} is already in production")
        _record(s, "canary", version, actor)
        s.execute(
            update(model_versions).where(model_versions.c.status == CANARY).values(status=RETIRED)
        )
        s.execute(
            update(model_versions).where(model_versions.c.version == version).values(status=CANARY)
        )


def _waiting(s: Session, version: str, verb: str) -> None:
    status = _get(s, version)["status"]
    if status not in (CANDIDATE, CANARY):
        raise StateConflictError(f"{version} is {status}; only a candidate or canary can be {verb}")


def approve(engine: Engine, version: str, *, actor: Actor = SYSTEM) -> None:
    """An operator's yes: a candidate (or canary) becomes production."""
    row = get_version(engine, version)
    with changing(engine) as s:
        _waiting(s, version, "approved")  # before the (slow) artifact check: fail fast
    check_servable(row)
    with changing(engine) as s:
        _waiting(s, version, "approved")  # and again: it may have changed meanwhile
        _record(s, "approve", version, actor)
        _make_production(s, version)


def reject(engine: Engine, version: str, *, actor: Actor = SYSTEM) -> None:
    with changing(engine) as s:
        _waiting(s, version, "rejected")
        _record(s, "reject", version, actor)
        s.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(status=REJECTED)
        )


def _rollback_pair(s: Session) -> tuple[RowMapping, RowMapping]:
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
    return current, previous


def rollback(engine: Engine, *, actor: Actor = SYSTEM) -> tuple[str, str]:
    """Back to the version that was in production before this one; the current one is
    rejected, so a second rollback goes one further back. Returns (from, to)."""
    with session_scope(engine) as s:
        _, target = _rollback_pair(s)
    check_servable(target)
    with changing(engine) as s:
        current, previous = _rollback_pair(s)
        if previous["version"] != target["version"]:
            raise StateConflictError(
                f"the registry changed while {target['version']} was checked; try again"
            )
        _record(s, "rollback", previous["version"], actor)
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
    with changing(engine) as s:
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


def list_jobs(engine: Engine, limit: int = 20) -> list[RowMapping]:
    """The latest retraining jobs, newest first (the job itself is `recsys.jobs`, which
    trains and so imports torch; this record of it does not)."""
    with session_scope(engine) as s:
        return list(s.execute(select(jobs).order_by(jobs.c.id.desc()).limit(limit)).mappings())
