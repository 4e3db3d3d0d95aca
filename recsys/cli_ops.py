"""Operator commands: the nightly job, its schedule, simulated traffic."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli_console import db_engine, err, out
from recsys.config import get_settings, train_config
from recsys.errors import ConfigError


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
    from recsys import registry
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
    from recsys import registry
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
