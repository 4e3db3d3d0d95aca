"""Operator commands: the nightly job, its schedule, the model registry."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from recsys import keys as keys_mod
from recsys import registry
from recsys.cli_console import db_engine, err, out
from recsys.config import get_settings, train_config
from recsys.data import timestamps
from recsys.errors import ConfigError
from recsys.store.db import session_scope

models_app = typer.Typer(help="Model versions in the registry.", no_args_is_help=True)
jobs_app = typer.Typer(help="Runs of the retraining job.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys kept (hashed) in the database.", no_args_is_help=True)

VersionArg = Annotated[
    str, typer.Argument(help="A version, or an alias: production, canary, latest.")
]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def retrain(
    epochs: Annotated[int | None, typer.Option(min=1, help="Override TrainConfig.epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    refit: Annotated[
        bool | None,
        typer.Option(
            "--refit/--no-refit",
            help="Train again on training + validation data for the best number of epochs "
            "(default on; about twice the training time).",
        ),
    ] = None,
) -> None:
    """Run the nightly job once: lock, snapshot, train, compare with production, gate,
    then promote, start a canary, wait for approval, or reject (as configured)."""
    from recsys import jobs as jobs_mod  # torch: only when a job runs (see cli.py)
    from recsys.cli_progress import training_progress

    overrides = {"epochs": epochs, "batch_size": batch_size, "refit": refit}
    settings = get_settings()
    config = train_config(settings, **overrides)
    with training_progress(err, config) as bar:
        progress = jobs_mod.Progress(bar.on_stage, bar.on_epoch, bar.on_rank_epoch)
        outcome = jobs_mod.retrain(db_engine(), settings, config, progress)
    reasons = "; ".join(outcome.reasons)
    out.print(
        f"job {outcome.job_id}: {outcome.status}"
        + (f", candidate {outcome.candidate} {outcome.decision}" if outcome.candidate else "")
        + (f" ({reasons})" if reasons else ""),
        highlight=False,
    )
    # Every gate it went through, in words: why it passed as well as why it failed.
    job = next((j for j in registry.list_jobs(db_engine(), 5) if j["id"] == outcome.job_id), None)
    for check in ((job["comparison"] or {}).get("checks") or []) if job is not None else []:
        mark = {True: "ok", False: "FAILED"}.get(check["passed"], "not applied")
        out.print(f"  {mark}: {check['detail']}", highlight=False, soft_wrap=True)
    if outcome.status == "failed":
        raise typer.Exit(1)


def schedule(
    cron: Annotated[
        str | None,
        typer.Option(help="Cron expression (5 fields, or 6 with seconds); RECSYS_RETRAIN_CRON."),
    ] = None,
    max_runs: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many runs (default: never).")
    ] = None,
) -> None:
    """Run `recsys retrain` on a cron schedule, in a long-lived process. Each run is a child
    process, so a crash or a leak in one run cannot take the scheduler down."""
    from croniter import croniter

    expression = cron or get_settings().retrain_cron
    if not croniter.is_valid(expression):
        raise ConfigError(f"invalid cron expression {expression!r} (e.g. '0 3 * * *')")
    runs = 0
    times = croniter(expression, datetime.now(UTC))
    while max_runs is None or runs < max_runs:
        due: datetime = times.get_next(datetime)
        out.print(f"next retrain at {due.isoformat()}", highlight=False)
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        done = subprocess.run([sys.executable, "-m", "recsys.cli", "retrain"], check=False)
        runs += 1
        out.print(f"retrain exited with status {done.returncode}", highlight=False)


def simulate_traffic(
    url: Annotated[str, typer.Option(help="Base URL of the running service.")] = (
        "http://127.0.0.1:8000"
    ),
    rounds: Annotated[int, typer.Option(min=1)] = 6,
    users: Annotated[int, typer.Option(min=1, help="Users per round.")] = 150,
    pause: Annotated[float, typer.Option(min=0, help="Seconds between rounds.")] = 10.0,
    held_out: Annotated[
        Path, typer.Option(help="Ratings kept back by `recsys load-sample --hold-out`.")
    ] = Path("var/held-out.csv"),
    truth: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION",
            help="Instead of held-out ratings: users answer as this model version says "
            "(recsys.simulate_truth), and the true positive rate of what was shown is printed.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated users' choices.")] = 0,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="RECSYS_API_KEY",
            help="Client key to send (X-API-Key): a service in production mode wants one "
            "for feedback.",
        ),
    ] = None,
) -> None:
    """Drive a running service like users would (recommendations, ratings from the held-out
    pairs, clicks, skips, new users), so the dashboard has a feedback loop to show. With
    --truth, users answer by a known model instead, so off-policy estimates can be checked."""
    from recsys.simulate import simulate

    if truth is not None:
        _simulate_truth(url, truth, rounds, users, seed, api_key)
        return
    if not held_out.is_file():
        raise ConfigError(
            f"{held_out} does not exist: run `recsys load-sample movielens --hold-out {held_out}`"
        )
    report = simulate(
        url, held_out, rounds=rounds, users_per_round=users, pause_s=pause, api_key=api_key
    )
    out.print(
        f"simulated {report.lists} lists, {report.ratings} ratings and {report.events} other "
        f"events ({report.errors} errors)",
        highlight=False,
    )


def _simulate_truth(
    url: str, version: str, rounds: int, users: int, seed: int, api_key: str | None
) -> None:
    from recsys.model import artifact
    from recsys.simulate import client_for
    from recsys.simulate_truth import Truth, simulate_truth

    row = registry.resolve(db_engine(), version)
    model = artifact.load(Path(row["artifact_path"]), row["checksum"])
    with client_for(url, api_key) as client:
        report = simulate_truth(
            client,
            Truth(model, get_settings().liked_threshold),
            rounds=rounds,
            users_per_round=users,
            seed=seed,
        )
    rate = report.expected_positives / max(report.slots, 1)
    out.print(
        f"simulated {report.lists} lists ({report.slots} slots): {report.positives} positive "
        f"answers; true positive rate per slot {rate:.4f} ({report.errors} errors)",
        highlight=False,
    )


@jobs_app.command("list")
def jobs_list(limit: Annotated[int, typer.Option(min=1)] = 20) -> None:
    """Recent job runs: status, decision and why."""
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


def _actor(reason: str | None) -> registry.Actor:
    # The command line has no credential to name: a deployment names itself
    # (RECSYS_CLI_ACTOR), else the account that runs it does.
    return registry.Actor(f"cli ({get_settings().cli_actor or _account()})", reason)


def _account() -> str:
    """The account of this process from the system's user database: the environment
    (LOGNAME, USER), which getpass reads first, was recorded verbatim, whatever it said."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # no such database (Windows), or an unnamed uid
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else getpass.getuser()


@models_app.command("promote")
def models_promote(version: VersionArg, reason: ReasonOption = None) -> None:
    """Make a version production now (the running services switch within seconds)."""
    engine = db_engine()
    name = registry.resolve(engine, version)["version"]
    registry.promote(engine, name, actor=_actor(reason))
    out.print(f"{name} is in production", highlight=False)


@models_app.command("approve")
def models_approve(version: VersionArg, reason: ReasonOption = None) -> None:
    """Approve a candidate waiting for an operator (or a canary): it becomes production."""
    engine = db_engine()
    name = registry.resolve(engine, version)["version"]
    registry.approve(engine, name, actor=_actor(reason))
    out.print(f"{name} approved: in production", highlight=False)


@models_app.command("reject")
def models_reject(version: VersionArg, reason: ReasonOption = None) -> None:
    """Reject a candidate or stop a canary; production is unchanged."""
    engine = db_engine()
    name = registry.resolve(engine, version)["version"]
    registry.reject(engine, name, actor=_actor(reason))
    out.print(f"{name} rejected", highlight=False)


@models_app.command("rollback")
def models_rollback(reason: ReasonOption = None) -> None:
    """Put the previous production version back; the current one is rejected."""
    old, new = registry.rollback(db_engine(), actor=_actor(reason))
    out.print(f"rolled back from {old} to {new}", highlight=False)


@models_app.command("history")
def models_history(
    limit: Annotated[int, typer.Option("-n", min=1, max=10_000)] = 20,
) -> None:
    """Who did what to the registry, when, from which production version, and why."""
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
    role: Annotated[str, typer.Option(help="client (writes) or operator")] = keys_mod.CLIENT,
) -> None:
    """Create a key and print it once; only its SHA-256 is stored."""
    key = keys_mod.create(db_engine(), name, role)
    out.print(f"{role} key {name!r} (shown once, store it now):", highlight=False)
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Keys by name and role (never the keys themselves)."""
    table = Table()
    for col in ("name", "role", "created", "revoked"):
        table.add_column(col)
    for k in keys_mod.list_keys(db_engine()):
        table.add_row(k.name, k.role, str(k.created_at)[:19], str(k.revoked_at or "")[:19])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke a key; running services refuse it within the reload interval."""
    keys_mod.revoke(db_engine(), name)
    out.print(f"key {name!r} revoked", highlight=False)
