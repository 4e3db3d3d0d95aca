"""The operator's registry commands: `recsys models` (versions, promotion, approval,
rollback, the audit trail), `recsys jobs` (runs of the nightly job) and `recsys keys` (API
keys). The database's modules (sqlalchemy) are imported in the commands, so that `recsys
--help` does not pay for them."""

from __future__ import annotations

import getpass
import json
import os
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table

from recsys.cli_console import db_engine, out
from recsys.config import get_settings
from recsys.data import timestamps

if TYPE_CHECKING:
    from recsys.registry import Actor

models_app = typer.Typer(help="Model versions in the registry.", no_args_is_help=True)
jobs_app = typer.Typer(help="Runs of the retraining job.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys kept (hashed) in the database.", no_args_is_help=True)

VersionArg = Annotated[
    str, typer.Argument(help="A version, or an alias: production, canary, latest.")
]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


@jobs_app.command("list")
def jobs_list(limit: Annotated[int, typer.Option(min=1)] = 20) -> None:
    """Recent job runs: status, decision and why."""
    from recsys import registry

    table = Table()
    for col in ("id", "kind", "started", "took", "status", "decision", "candidate", "reasons"):
        table.add_column(col)
    for row in registry.list_jobs(db_engine(), limit):
        took = (
            f"{(row['finished_at'] - row['started_at']).total_seconds():.1f}s"
            if row["finished_at"]
            else "-"
        )
        why = "; ".join(row["reasons"] or []) or (row["error"] or "") or _passed(row)
        table.add_row(
            str(row["id"]),
            row["kind"],
            str(row["started_at"])[:19],
            took,
            row["status"],
            row["decision"] or "-",
            row["candidate_version"] or "-",
            why,
        )
    out.print(table)


def _passed(job: Any) -> str:
    """What a job that refused nothing went through: each check, passed or not applied."""
    checks = (job["comparison"] or {}).get("checks") or []
    marks = {True: "ok", None: "not applied"}
    return "; ".join(f"{marks.get(c['passed'], 'failed')}: {c['detail']}" for c in checks)


@models_app.command("list")
def models_list() -> None:
    """Model versions, newest first."""
    from recsys import registry

    table = Table()
    for col in ("version", "status", "rmse", "ndcg@10", "created", "promoted"):
        table.add_column(col)
    for row in registry.list_versions(db_engine()):
        model = ((row["metrics"] or {}).get("report") or {}).get("model", {})
        table.add_row(
            row["version"],
            row["status"],
            _fmt(model.get("rmse")),
            _fmt(model.get("ndcg@10")),
            str(row["created_at"])[:19],
            str(row["promoted_at"] or "")[:19],
        )
    out.print(table)


@models_app.command("show")
def models_show(version: VersionArg = "production") -> None:
    """One version: status, gate decision, metrics and its learning curve."""
    from recsys import registry

    engine = db_engine()
    row = registry.resolve(engine, version)
    run = registry.get_run(engine, row["training_run_id"]) if row["training_run_id"] else None
    shown: dict[str, Any] = {
        "version": row["version"],
        "status": row["status"],
        "artifact": row["artifact_path"],
        "created_at": str(row["created_at"]),
        "promoted_at": str(row["promoted_at"]) if row["promoted_at"] else None,
        "gate": (row["metrics"] or {}).get("gate"),
        "metrics": ((row["metrics"] or {}).get("report") or {}).get("model"),
        "learning_curve": run["history"] if run else None,
    }
    out.print_json(json.dumps(shown, default=str))


@models_app.command("online")
def models_online(hours: Annotated[float, typer.Option(min=0.01)] = 24.0) -> None:
    """Per version, from logged impressions and feedback: lists served, feedback answering
    them, positive share, prediction bias. Compare a canary with production before approving."""
    from recsys import monitoring
    from recsys.store.db import session_scope
    from recsys.store.events import load_served

    with session_scope(db_engine()) as s:
        served, feedback = load_served(session=s, since=timestamps.hours_ago(hours))
    figures = monitoring.online_by_version(
        served, feedback, liked_threshold=get_settings().liked_threshold
    )
    table = Table()
    for col in ("version", "lists", "feedback", "positive rate", "rated shown", "prediction bias"):
        table.add_column(col)
    for version, f in figures.items():
        table.add_row(
            version,
            str(f["lists_served"]),
            str(f["feedback"]),
            _fmt(f["positive_rate"]),
            str(f["rated_shown_items"]),
            _fmt(f["prediction_bias"]),
        )
    out.print(table)


ReasonOption = Annotated[
    str | None, typer.Option(help="Why: kept in the audit trail (recsys models history).")
]


def _actor(reason: str | None) -> Actor:
    # The command line has no credential to name: a deployment names itself
    # (RECSYS_CLI_ACTOR), else the account that runs it does.
    from recsys.registry import Actor

    return Actor(f"cli ({get_settings().cli_actor or _account()})", reason)


def _account() -> str:
    """The account of this process from the system's user database: the environment
    (LOGNAME, USER), which getpass reads first, was recorded verbatim, whatever it said."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # no such database (Windows), or an unnamed uid
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else getpass.getuser()


def _decide(
    version: str, reason: str | None, action: Literal["promote", "approve", "reject"], done: str
) -> None:
    """Apply the registry's `action` to `version` (a name or an alias) and print `done`
    with the resolved name."""
    from recsys import registry

    engine = db_engine()
    name = registry.resolve(engine, version)["version"]
    getattr(registry, action)(engine, name, actor=_actor(reason))
    out.print(done.format(name=name), highlight=False)


@models_app.command("promote")
def models_promote(version: VersionArg, reason: ReasonOption = None) -> None:
    """Make a version production now (the running services switch within seconds)."""
    _decide(version, reason, "promote", "{name} is in production")


@models_app.command("approve")
def models_approve(version: VersionArg, reason: ReasonOption = None) -> None:
    """Approve a candidate waiting for an operator (or a canary): it becomes production."""
    _decide(version, reason, "approve", "{name} approved: in production")


@models_app.command("reject")
def models_reject(version: VersionArg, reason: ReasonOption = None) -> None:
    """Reject a candidate or stop a canary; production is unchanged."""
    _decide(version, reason, "reject", "{name} rejected")


@models_app.command("rollback")
def models_rollback(reason: ReasonOption = None) -> None:
    """Put the previous production version back; the current one is rejected."""
    from recsys import registry

    old, new = registry.rollback(db_engine(), actor=_actor(reason))
    out.print(f"rolled back from {old} to {new}", highlight=False)


@models_app.command("history")
def models_history(
    limit: Annotated[int, typer.Option("-n", min=1, max=10_000)] = 20,
) -> None:
    """Who did what to the registry, when, from which production version, and why."""
    from recsys import registry

    table = Table("at (UTC)", "actor", "action", "from", "to", "reason")
    for row in registry.history(db_engine(), limit):
        table.add_row(
            timestamps.iso(row["at"]) or "",
            row["actor"],
            row["action"],
            row["from_version"] or "-",
            row["to_version"] or "-",
            row["reason"] or "",
        )
    out.print(table)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. web-frontend.")],
    role: Annotated[str, typer.Option(help="client (writes) or operator")] = "client",
) -> None:
    """Create a key and print it once; only its SHA-256 is stored."""
    from recsys import keys

    key = keys.create(db_engine(), name, role)
    out.print(f"{role} key {name!r} (shown once, store it now):", highlight=False)
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Keys by name and role (never the keys themselves)."""
    table = Table()
    for col in ("name", "role", "created", "revoked"):
        table.add_column(col)
    from recsys import keys

    for k in keys.list_keys(db_engine()):
        table.add_row(k.name, k.role, str(k.created_at)[:19], str(k.revoked_at or "")[:19])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke a key; running services refuse it within the reload interval."""
    from recsys import keys

    keys.revoke(db_engine(), name)
    out.print(f"key {name!r} revoked", highlight=False)
