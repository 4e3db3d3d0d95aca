"""The nightly retraining job: lock, snapshot, train, compare with production, gate, decide.

    retrain(engine, settings) -> JobOutcome

Feedback loops make a blind promotion dangerous: what we show shapes what users rate, which
shapes the next model. So the candidate and the production model are evaluated on the same
holdout (a hash split of (user, item) pairs, which production never trained on either), the
candidate must pass every gate, and then it goes live, waits for an operator, or serves a
canary share of users first, as configured. Every run is recorded in `jobs`, with its reasons.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import Engine, RowMapping, select, update

from recsys import registry
from recsys.config import Settings, train_config
from recsys.data.interactions import Interactions
from recsys.data.snapshot import training_snapshot
from recsys.evaluation.gates import (
    CANARY,
    PROMOTED,
    Decision,
    GateCheck,
    decide,
    gate_checks,
    off_policy_check,
)
from recsys.evaluation.report import BaselineCache, Report
from recsys.locks import job_lock
from recsys.model import artifact
from recsys.model.network import DotProductBias
from recsys.model.recommender import Recommender
from recsys.offpolicy.run import judge_twin, load_traffic, off_policy_gate
from recsys.store.db import session_scope
from recsys.store.tables import jobs, model_versions, training_runs
from recsys.train_config import TrainConfig
from recsys.training.assess import Fitted
from recsys.training.pipeline import BASELINES_FOLDER, fit
from recsys.training.runs import production_twin, record_fitted
from recsys.training.trainer import EpochStats, Trainer

RETRAIN = "retrain"


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    status: str
    decision: str | None
    reasons: list[str]
    candidate: str | None
    production: str | None


def warm_network(
    previous: Recommender, data: Interactions, config: TrainConfig, settings: Settings
) -> tuple[DotProductBias, dict[str, int]]:
    """A network for `data` whose rows for ids the previous model knew start from its
    weights; new ids start as a fresh model would."""
    gen = torch.Generator().manual_seed(config.seed)
    net = Trainer(config, settings.rating_scale).build(data, gen, float(data.ratings.mean()))
    copied = {"users": 0, "items": 0}
    with torch.no_grad():
        for side, vocab, old_vocab, factors, bias, old_factors, old_bias in (
            ("users", data.user_vocab, previous.user_vocab, net.user_factors, net.user_bias,
             previous.user_factors, previous.user_bias),
            ("items", data.item_vocab, previous.item_vocab, net.item_factors, net.item_bias,
             previous.item_factors, previous.item_bias),
        ):  # fmt: skip
            old_rows = old_vocab.indices(vocab.ids)
            known = torch.from_numpy(old_rows >= 0)
            rows = old_rows[old_rows >= 0]
            factors[known] = torch.from_numpy(old_factors[rows])
            bias[known] = torch.from_numpy(old_bias[rows])
            copied[side] = int(known.sum())
        net.global_bias.fill_(previous.global_bias)
    return net, copied


def _start(engine: Engine, kind: str, **values: Any) -> int:
    with session_scope(engine) as s:
        return int(
            s.execute(
                jobs.insert()
                .values(kind=kind, started_at=datetime.now(UTC), pid=os.getpid(), **values)
                .returning(jobs.c.id)
            ).scalar_one()
        )


def _finish(engine: Engine, job_id: int, **values: Any) -> None:
    with session_scope(engine) as s:
        s.execute(
            update(jobs).where(jobs.c.id == job_id).values(finished_at=datetime.now(UTC), **values)
        )


def _clean_up_after_killed_runs(engine: Engine, kind: str, artifact_dir: Path) -> None:
    """Under the lock, nobody else is running: a 'running' record is a run that died."""
    note = "interrupted: the process ended before finishing (killed or crashed)"
    with session_scope(engine) as s:
        s.execute(
            update(jobs)
            .where(jobs.c.kind == kind, jobs.c.status == "running")
            .values(status="failed", error=note, finished_at=datetime.now(UTC))
        )
        s.execute(
            update(training_runs)
            .where(training_runs.c.status == "running")
            .values(status="failed", error=note, finished_at=datetime.now(UTC))
        )
        registered = set(s.scalars(select(model_versions.c.version)))
    if artifact_dir.is_dir():
        for tmp in artifact_dir.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        # A twin saved by a run that died before saving and registering its served model.
        for twin in artifact_dir.glob(f"*{artifact.TWIN_SUFFIX}"):
            if twin.name.removesuffix(artifact.TWIN_SUFFIX) not in registered:
                shutil.rmtree(twin, ignore_errors=True)


def _convergence(
    engine: Engine, production: RowMapping, fitted_history: list[dict[str, Any]], best_epoch: int
) -> dict[str, Any]:
    """How the warm-started run converged next to the run that made production: the epoch of
    the best validation loss and the validation loss after the first epoch, for both."""
    with session_scope(engine) as s:
        previous = s.execute(
            select(training_runs.c.best_epoch, training_runs.c.history).where(
                training_runs.c.id == production["training_run_id"]
            )
        ).first()
    first = fitted_history[0]["val_loss"] if fitted_history else None
    return {
        "best_epoch": best_epoch,
        "first_epoch_val_loss": first,
        "previous_best_epoch": previous.best_epoch if previous else None,
        "previous_first_epoch_val_loss": (
            previous.history[0]["val_loss"] if previous and previous.history else None
        ),
    }


@dataclass(frozen=True)
class Progress:
    """Who hears how a run is going (the CLI prints it; the scheduler's child too)."""

    on_stage: Callable[[str], None] | None = None
    on_epoch: Callable[[EpochStats], None] | None = None
    on_rank_epoch: Callable[[EpochStats], None] | None = None


def retrain(
    engine: Engine,
    settings: Settings,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> JobOutcome:
    """One run of the nightly job. Never raises for a failed run: it is recorded and
    returned with status 'failed' (the error text in `jobs.error`)."""
    # The hash split keeps the holdout of every run disjoint from what production learned.
    config = (config or train_config(settings)).model_copy(update={"split": "hash"})
    with job_lock(engine, RETRAIN) as acquired:
        if not acquired:
            job_id = _start(engine, RETRAIN, status="skipped")
            reason = "another retrain is running (its lock is held)"
            _finish(engine, job_id, reasons=[reason])
            return JobOutcome(job_id, "skipped", None, [reason], None, None)
        _clean_up_after_killed_runs(engine, RETRAIN, settings.artifact_dir)
        job_id = _start(engine, RETRAIN, status="running")
        try:
            return _run(engine, settings, config, job_id, progress or Progress())
        except Exception as exc:
            _finish(
                engine,
                job_id,
                status="failed",
                error="".join(traceback.format_exception_only(exc)).strip(),
            )
            return JobOutcome(job_id, "failed", None, [str(exc)], None, None)


def _off_policy(
    engine: Engine, settings: Settings, judged: Recommender, production: RowMapping
) -> tuple[list[str], dict[str, Any]]:
    """The candidate judged on the lists production served since it was promoted (the gate
    of `recsys.offpolicy.run.off_policy_gate`), and the report for the record."""
    since = production["promoted_at"]
    logged = load_traffic(engine, settings, since)
    report = judge_twin(engine, settings, judged, "candidate", logged, since)
    reasons, info = off_policy_gate(report, production["version"], settings)
    return reasons, {**info, "report": report.as_json()}


def _judge(
    engine: Engine,
    settings: Settings,
    fitted: Fitted,
    production: RowMapping | None,
    stage: Callable[[str], None],
    unread: GateCheck | None = None,
) -> tuple[Decision, dict[str, Any] | None]:
    """Every gate of the job (the offline ones on the holdout; the off-policy one on the
    lists production served, when there is a production) and what they decide, with
    `unread` (production's artifact could not be read) among them; the off-policy judgement
    for the record."""
    report = fitted.report
    checks = gate_checks(report, settings, fitted.config.top_k) if report else []
    if unread is not None:
        checks.append(unread)
    off_policy = None
    if production is not None:
        stage(f"off-policy judgement on the lists {production['version']} served")
        more, off_policy = _off_policy(engine, settings, fitted.recommender, production)
        checks.append(off_policy_check(more, off_policy))
    decided = decide(
        checks,
        require_approval=settings.require_approval,
        canary_share=settings.canary_share,
        has_production=production is not None,
    )
    return decided, off_policy


def _compared(report: Report | None) -> dict[str, Any]:
    """The figures of the candidate, production and the weak baselines on the same holdout."""
    names = ("model", "production", "biases", "most_popular")
    return {name: report[name] for name in names if report is not None and name in report}


def _act(engine: Engine, decision: str, version: str, job_id: int) -> None:
    """Promote the candidate, or start its canary, as decided (it was just saved and
    verified: no second artifact check)."""
    actor = registry.Actor(f"retrain job #{job_id}", "passed every gate")
    if decision == PROMOTED:
        registry.promote(engine, version, check=False, actor=actor)
    elif decision == CANARY:
        registry.start_canary(engine, version, check=False, actor=actor)


def _warm_start(
    previous: Recommender | None, data: Interactions, config: TrainConfig, settings: Settings
) -> tuple[DotProductBias | None, dict[str, Any] | None]:
    """The network to start from (production's rows, where `settings.warm_start` and the
    shapes allow) and the record of what was copied; (None, None) for a fresh start."""
    if not settings.warm_start or previous is None or previous.n_factors != config.n_factors:
        return None, None
    network, copied = warm_network(previous, data, config, settings)
    return network, {"rows_copied": copied}


def _run(
    engine: Engine, settings: Settings, config: TrainConfig, job_id: int, progress: Progress
) -> JobOutcome:
    t0 = time.perf_counter()
    stage = progress.on_stage or (lambda _: None)
    data = training_snapshot(engine, config.split)
    timings = {"snapshot_s": time.perf_counter() - t0}
    stage(f"snapshot: {data!r} in {timings['snapshot_s']:.1f}s")
    production, previous, twin, unread = production_twin(engine, data)
    if unread is not None:
        stage(unread.detail)
    network, warm = _warm_start(previous, data, config, settings)
    with registry.training_run(engine, config.model_dump()) as run_id:
        fitted = fit(
            data,
            config,
            settings.rating_scale,
            extra=[twin] if twin is not None else [],
            network=network,
            on_epoch=progress.on_epoch,
            on_rank_epoch=progress.on_rank_epoch,
            on_stage=progress.on_stage,
            baseline_cache=BaselineCache(settings.artifact_dir / BASELINES_FOLDER),
        )
        decided, off_policy = _judge(engine, settings, fitted, production, stage, unread)
        decision, reasons = decided.action, decided.reasons
        if warm is not None and production is not None:
            result = fitted.result
            warm.update(_convergence(engine, production, result.history_dicts(), result.best_epoch))
        gate = decided.as_json()
        metrics = {"report": fitted.report_json, "gate": gate, "off_policy": off_policy}
        version, _ = record_fitted(
            engine, settings.artifact_dir, fitted, run_id=run_id, status=decided.status,
            metrics=metrics, timings=timings,
        )  # fmt: skip
    _act(engine, decision, version, job_id)
    production_version = production["version"] if production is not None else None
    comparison = {
        **_compared(fitted.report),
        "warm_start": warm,
        "off_policy": off_policy,
        "checks": [c.as_dict() for c in decided.checks],
    }
    _finish(
        engine,
        job_id,
        status="succeeded",
        decision=decision,
        reasons=reasons,
        candidate_version=version,
        production_version=production_version,
        comparison=comparison,
        data_counts=fitted.recommender.card.data_json(),
        timings={**timings, **fitted.timings, "total_s": time.perf_counter() - t0},
    )
    return JobOutcome(job_id, "succeeded", decision, reasons, version, production_version)
