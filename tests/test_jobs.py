"""The retraining job: gates, approval, canary, the lock, and surviving `kill -9`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from recsys import jobs, registry
from recsys.config import RatingScale, Settings
from recsys.data.ingest import ingest_frames
from recsys.evaluation.gates import gates
from recsys.evaluation.report import Report
from recsys.locks import job_lock
from recsys.model import artifact
from recsys.rollout import bucket, in_canary
from recsys.store.db import session_scope
from recsys.store.tables import jobs as jobs_table
from recsys.store.tables import model_versions, training_runs
from recsys.train_config import TrainConfig
from recsys.training.pipeline import BASELINES_FOLDER
from recsys.training.runs import train_from_database
from service.app import create_app
from tests.service.conftest import GENRE_CONFIG, genre_frames

RECSYS = str(Path(sys.executable).parent / "recsys")
CONFIG = GENRE_CONFIG.model_copy(update={"epochs": 15})


def loaded(engine: Engine) -> None:
    ratings, items = genre_frames()
    ingest_frames(engine, [ratings], source="genres", item_frames=[items])


def settings_for(db_url: str, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(database_url=db_url, artifact_dir=tmp_path / "artifacts", **overrides)  # type: ignore[arg-type]


def test_first_run_promotes_and_later_runs_compare_with_production(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    loaded(engine)
    # Two models of the same data differ in NDCG@10 by a few hundredths on this small set;
    # this test is about the comparison with production, not about that noise.
    settings = settings_for(db_url, tmp_path, warm_start=True, gate_ndcg_tolerance=0.1)
    first = jobs.retrain(engine, settings, CONFIG)
    assert (first.status, first.decision, first.production) == ("succeeded", "promoted", None)
    second = jobs.retrain(engine, settings, CONFIG)
    assert second.status == "succeeded" and second.production == first.candidate
    assert second.decision == "promoted", second.reasons
    assert registry.production(engine)["version"] == second.candidate  # type: ignore[index]
    row = registry.list_jobs(engine)[0]
    assert row["comparison"]["production"]["rmse"] > 0  # evaluated on the same holdout
    warm = row["comparison"]["warm_start"]
    assert warm["rows_copied"]["items"] > 0
    # Starting from production's factors, the first epoch already beats a cold first epoch.
    assert warm["first_epoch_val_loss"] < warm["previous_first_epoch_val_loss"]
    assert row["timings"]["total_s"] > 0 and row["data_counts"]["ratings"] > 0
    # Why it passed is recorded too: every gate, in words, passed or not applied.
    checks = {c["gate"]: c for c in row["comparison"]["checks"]}
    assert checks["rmse_vs_biases"]["passed"] is True
    assert checks["ndcg_vs_production"]["passed"] is True
    assert "production's" in checks["ndcg_vs_production"]["detail"]
    assert checks["off_policy"]["passed"] is None
    assert "not applied" in checks["off_policy"]["detail"]
    # ... and shown where an operator looks: `recsys jobs list` and GET /v1/jobs.
    env = {**os.environ, "RECSYS_DATABASE_URL": db_url, "COLUMNS": "400"}
    listed = subprocess.run(
        [RECSYS, "jobs", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "ok: NDCG@10" in " ".join(listed.split()) and "not applied" in listed
    ran = subprocess.run(
        [RECSYS, "retrain"], env={**env, "RECSYS_ARTIFACT_DIR": str(settings.artifact_dir)},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "ok: RMSE" in ran and "production's" in ran and "off-policy gate" in ran, ran
    token = "jobs-operator-token-0123456789"
    app = create_app(settings.model_copy(update={"operator_token": SecretStr(token)}))
    with TestClient(app) as client:
        shown = client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"}).json()
    assert {c["gate"] for c in shown[0]["checks"]} == set(checks)


def test_worse_candidate_is_rejected_with_the_reason(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    loaded(engine)
    settings = settings_for(db_url, tmp_path, warm_start=False)
    good = jobs.retrain(engine, settings, CONFIG)
    # Made worse on purpose: one epoch at a learning rate too small to learn anything.
    bad = jobs.retrain(engine, settings, CONFIG.model_copy(update={"epochs": 1, "lr": 1e-5}))
    assert bad.decision == "rejected"
    assert any("worse than production" in r for r in bad.reasons), bad.reasons
    assert registry.production(engine)["version"] == good.candidate  # type: ignore[index]
    assert registry.get_version(engine, bad.candidate or "")["status"] == "rejected"
    assert registry.list_jobs(engine)[0]["reasons"] == bad.reasons


def test_approval_flow_and_rollback(engine: Engine, db_url: str, tmp_path: Path) -> None:
    loaded(engine)
    first = jobs.retrain(engine, settings_for(db_url, tmp_path), CONFIG)
    gated = settings_for(db_url, tmp_path, require_approval=True)
    waiting = jobs.retrain(engine, gated, CONFIG)
    assert waiting.decision == "awaiting_approval"
    assert registry.production(engine)["version"] == first.candidate  # type: ignore[index]
    registry.approve(engine, waiting.candidate or "")
    assert registry.production(engine)["version"] == waiting.candidate  # type: ignore[index]
    declined = jobs.retrain(engine, gated, CONFIG)
    registry.reject(engine, declined.candidate or "")
    assert registry.get_version(engine, declined.candidate or "")["status"] == "rejected"
    assert registry.rollback(engine) == (waiting.candidate, first.candidate)
    assert registry.production(engine)["version"] == first.candidate  # type: ignore[index]


def test_canary_decision_and_a_stable_share(engine: Engine, db_url: str, tmp_path: Path) -> None:
    loaded(engine)
    jobs.retrain(engine, settings_for(db_url, tmp_path), CONFIG)
    canary = jobs.retrain(engine, settings_for(db_url, tmp_path, canary_share=0.3), CONFIG)
    assert canary.decision == "canary"
    assert registry.canary(engine)["version"] == canary.candidate  # type: ignore[index]
    users = [f"user-{n}" for n in range(20_000)]
    share = np.mean([in_canary(u, 0.3) for u in users])
    assert abs(share - 0.3) < 0.015
    assert [bucket(u) for u in users[:50]] == [bucket(u) for u in users[:50]]  # stable
    assert not in_canary(None, 0.3) and not in_canary("user-1", 0.0)


def test_two_concurrent_runs_train_once(engine: Engine, db_url: str, tmp_path: Path) -> None:
    loaded(engine)
    settings = settings_for(db_url, tmp_path)
    outcomes: list[jobs.JobOutcome] = []
    runs = [
        threading.Thread(target=lambda: outcomes.append(jobs.retrain(engine, settings, CONFIG)))
        for _ in range(2)
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert sorted(o.status for o in outcomes) == ["skipped", "succeeded"]
    # Across processes too: while this process holds the lock, `recsys retrain` skips.
    env = {**os.environ, "RECSYS_DATABASE_URL": db_url, "RECSYS_ARTIFACT_DIR": str(tmp_path)}
    with job_lock(engine, jobs.RETRAIN) as held:
        assert held
        done = subprocess.run([RECSYS, "retrain"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "skipped" in done.stdout, done.stdout + done.stderr
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(model_versions)) == 1


def test_kill_9_mid_training_leaves_production_and_next_run_succeeds(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    loaded(engine)
    settings = settings_for(db_url, tmp_path)
    first = jobs.retrain(engine, settings, CONFIG)
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": db_url,
        "RECSYS_ARTIFACT_DIR": str(settings.artifact_dir),
    }
    # Batches of one: the first epoch alone takes seconds, so the kill lands mid-training.
    proc = subprocess.Popen(
        [RECSYS, "retrain", "--batch-size", "1", "--epochs", "50"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        with session_scope(engine) as s:
            running = s.scalar(select(func.count()).where(training_runs.c.status == "running"))
        if running:
            break
        assert proc.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert registry.production(engine)["version"] == first.candidate  # type: ignore[index]
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(model_versions)) == 1
    # The served model and its evaluated twin, nothing of the killed run (beside them, the
    # first run's baselines, kept for the next run on the same data).
    names = {p.name for p in settings.artifact_dir.iterdir()} - {BASELINES_FOLDER}
    assert sorted(names) == [
        first.candidate,
        f"{first.candidate}{artifact.TWIN_SUFFIX}",
    ]
    # The lock died with the process: the next run takes it and succeeds.
    after = jobs.retrain(engine, settings, CONFIG)
    assert after.status == "succeeded" and after.decision == "promoted"
    with session_scope(engine) as s:
        killed = s.execute(
            select(jobs_table.c.status, jobs_table.c.error).order_by(jobs_table.c.id)
        ).all()[1]
    assert killed.status == "failed" and "interrupted" in (killed.error or "")


def test_retrain_with_no_data_fails_cleanly(engine: Engine, db_url: str, tmp_path: Path) -> None:
    outcome = jobs.retrain(engine, settings_for(db_url, tmp_path), TrainConfig())
    assert outcome.status == "failed" and "ingest" in outcome.reasons[0]
    assert registry.list_jobs(engine)[0]["status"] == "failed"


def test_schedule_runs_the_job_on_its_cron(engine: Engine, db_url: str, tmp_path: Path) -> None:
    loaded(engine)
    env = {**os.environ, "RECSYS_DATABASE_URL": db_url, "RECSYS_ARTIFACT_DIR": str(tmp_path)}
    # Six fields: the last is seconds, so the first run is due within two seconds.
    done = subprocess.run(
        [RECSYS, "schedule", "--cron", "* * * * * */2", "--max-runs", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "next retrain at" in done.stdout and "exited with status 0" in done.stdout
    assert registry.list_jobs(engine)[0]["status"] == "succeeded"
    bad = subprocess.run(
        [RECSYS, "schedule", "--cron", "every night"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "invalid cron expression" in bad.stderr


def test_every_gate_by_hand() -> None:
    def row(rmse: float, ndcg: float, coverage: float, gini: float) -> dict[str, float | None]:
        return {"rmse": rmse, "ndcg@10": ndcg, "coverage": coverage, "gini": gini}

    scorers = {
        "model": row(0.90, 0.05, 0.04, 0.95),
        "production": row(0.85, 0.08, 0.10, 0.80),
        "global_mean": row(1.0, 0.0, 0.0, 0.0),
        "biases": row(0.88, 0.0, 0.0, 0.0),
        "most_popular": row(1.0, 0.0, 0.0, 0.0),
    }
    report = Report(scorers, n_test=100, n_ranked_users=10, catalog_mean_popularity=1.0)
    reasons = gates(report, Settings(), k=10)
    assert len(reasons) == 5, reasons
    for text in ("biases", "worse than production", "NDCG@10", "coverage", "Gini"):
        assert any(text in r for r in reasons), (text, reasons)
    scorers["model"] = row(0.852, 0.075, 0.06, 0.84)  # within every tolerance
    assert gates(report, Settings(), k=10) == []
    # Tolerances are settings.
    assert gates(report, Settings(gate_rmse_tolerance=0.0), k=10) != []


def test_a_failed_save_closes_the_training_run_as_failed(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """A full disk (here: the artifact folder cannot be made) fails the job and its run; no
    run stays 'running' for the next job to call a crash."""
    loaded(engine)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = Settings(database_url=db_url, artifact_dir=blocker / "artifacts")
    outcome = jobs.retrain(engine, settings, CONFIG)
    assert outcome.status == "failed" and "not-a-folder" in outcome.reasons[0]
    with session_scope(engine) as s:
        runs = s.execute(select(training_runs.c.status, training_runs.c.error)).all()
    assert [r.status for r in runs] == ["failed"]
    assert "NotADirectoryError" in runs[0].error
    assert registry.production(engine) is None


def test_retrain_judges_relevance_at_the_configured_liked_threshold(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """`recsys retrain` recorded 4.0 while `recsys train` recorded RECSYS_LIKED_THRESHOLD."""
    loaded(engine)
    settings = settings_for(db_url, tmp_path, liked_threshold=3.0)
    outcome = jobs.retrain(engine, settings)
    assert outcome.status == "succeeded", outcome.reasons
    with session_scope(engine) as s:
        config = s.execute(select(training_runs.c.config)).scalar_one()
    assert config["liked_threshold"] == 3.0


def test_a_manual_run_does_not_replace_a_better_production(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """`recsys train` promoted any model that beat the baselines, replacing a better
    production model. It now compares with production's twin on the same holdout, as the
    job does."""
    loaded(engine)
    settings = settings_for(db_url, tmp_path, gate_rmse_tolerance=0.0)
    folder = settings.artifact_dir
    good = train_from_database(engine, folder, CONFIG, RatingScale(), settings=settings)
    assert good.promoted
    # Three epochs: far better than the baselines, worse than production.
    short = CONFIG.model_copy(update={"epochs": 3})
    worse = train_from_database(engine, folder, short, RatingScale(), settings=settings)
    report = worse.fitted.report
    assert report is not None
    assert (report["model"]["rmse"] or 9.0) < (report["biases"]["rmse"] or 0.0)
    assert not worse.promoted
    reasons = registry.get_version(engine, worse.version)["metrics"]["gate"]["reasons"]
    assert reasons and all("production" in r for r in reasons), reasons
    assert registry.production(engine)["version"] == good.version  # type: ignore[index]


def test_an_unreadable_production_is_replaced_against_the_baselines(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """Production's artifact gone (pruned by hand, a lost volume) or damaged: the retrain and
    `recsys train` still run, the candidate judged against the baselines alone, and the record
    says why production was not compared, so a model can replace it."""
    loaded(engine)
    settings = settings_for(db_url, tmp_path, warm_start=True)
    first = jobs.retrain(engine, settings, CONFIG)
    assert first.decision == "promoted" and first.candidate is not None
    folder = Path(registry.get_version(engine, first.candidate)["artifact_path"])
    (folder / "manifest.json").unlink()
    second = jobs.retrain(engine, settings, CONFIG)
    assert second.status == "succeeded" and second.decision == "promoted", second.reasons
    assert second.production == first.candidate
    checks = {c["gate"]: c for c in registry.list_jobs(engine)[0]["comparison"]["checks"]}
    unread = checks["vs_production"]
    assert unread["passed"] is None and first.candidate in unread["detail"]
    assert "missing manifest.json" in unread["detail"] and "ndcg_vs_production" not in checks
    assert checks["ndcg_vs_most_popular"]["passed"] is True  # the baselines still judge it

    # `recsys train` likewise, on a production whose files no longer match their checksum.
    folder = Path(registry.get_version(engine, second.candidate or "")["artifact_path"])
    weights = next(p for p in sorted(folder.iterdir()) if p.name != "manifest.json")
    weights.write_bytes(weights.read_bytes() + b"tampered")
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": db_url,
        "RECSYS_ARTIFACT_DIR": str(settings.artifact_dir),
        "COLUMNS": "400",
    }
    ran = subprocess.run(
        [RECSYS, "train", "--epochs", "3"], env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert "not applied: production" in " ".join(ran.stderr.split())
    assert "is corrupted: checksum of" in " ".join(ran.stderr.split())
    newest = registry.production(engine)
    assert newest is not None and newest["version"] not in (first.candidate, second.candidate)
