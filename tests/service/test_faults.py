"""Faults, each against a real uvicorn process and a real database: the database going away,
`kill -9` in the middle of a stream of feedback, an unwritable or full disk while training."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from recsys import jobs, registry
from recsys.config import RatingScale, Settings
from recsys.store.db import session_scope
from recsys.store.tables import feedback
from recsys.training.pipeline import BASELINES_FOLDER
from recsys.training.runs import train_from_database
from tests.service.conftest import GENRE_CONFIG, Served
from tests.service.live import RECSYS, running, wait_for

FAST = {"reload_interval_s": "0.5", "impression_flush_s": "0.1"}


def stored_ids(served: Served) -> set[str]:
    with session_scope(served.engine) as s:
        return set(s.scalars(select(feedback.c.event_id).where(feedback.c.event_id.is_not(None))))


@pytest.mark.postgres
def test_database_goes_away_and_comes_back(
    served: Served, postgres_admin_url: str, tmp_path: Path
) -> None:
    if not served.url.startswith("postgresql"):
        pytest.skip("an embedded SQLite file cannot go away on its own; PostgreSQL can")
    name = served.url.rsplit("/", 1)[1]
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    acknowledged: list[str] = []

    def post(c: httpx.Client) -> int:
        event_id = uuid.uuid4().hex
        r = c.post("/v1/feedback", json={"user_id": "u-away", "item_id": "film0", "value": 4.0,
                                         "event_id": event_id})  # fmt: skip
        if r.status_code == 201:
            acknowledged.append(event_id)
        return r.status_code

    with (
        running(served, tmp_path, **FAST) as (base, _),
        httpx.Client(base_url=base, timeout=10) as c,
    ):
        assert post(c) == 201
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
        try:
            # Recommendations keep coming from memory; readiness says what is wrong.
            r = c.get("/v1/users/user0/recommendations")
            assert r.status_code == 200 and r.json()["strategy"] == "model"
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["database"] is False
            answer = c.post("/v1/feedback", json={"user_id": "u", "item_id": "film0", "value": 3})
            assert answer.status_code == 503 and "retry" in answer.json()["detail"]
            assert answer.headers["retry-after"]
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        # It recovers by itself.
        wait_for(lambda: c.get("/readyz").status_code == 200)
        assert post(c) == 201
    admin.dispose()
    assert set(acknowledged) <= stored_ids(served)


def test_kill_9_during_a_feedback_stream_loses_nothing_acknowledged(
    served: Served, tmp_path: Path
) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()

    def stream(base: str, n: int) -> None:
        with httpx.Client(base_url=base, timeout=5) as c:
            while not stop.is_set():
                event_id = f"kill-{n}-{uuid.uuid4().hex}"
                event = {"user_id": f"k{n}", "item_id": "film2", "kind": "click"}
                try:
                    r = c.post("/v1/feedback", json={**event, "event_id": event_id})
                except httpx.TransportError:
                    return  # the server is gone: what was not answered was not acknowledged
                if r.status_code == 201:
                    acknowledged.append(event_id)

    with running(served, tmp_path, **FAST) as (base, proc):
        streams = [threading.Thread(target=stream, args=(base, n)) for n in range(4)]
        for t in streams:
            t.start()
        wait_for(lambda: len(acknowledged) > 50, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in streams:
            t.join()
    assert len(acknowledged) > 50
    missing = set(acknowledged) - stored_ids(served)
    assert not missing, f"{len(missing)} acknowledged events lost"


def test_unwritable_artifact_directory_fails_the_job_cleanly(
    served: Served, tmp_path: Path
) -> None:
    before = registry.production(served.engine)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the artifact directory should be")
    outcome = jobs.retrain(served.engine, Settings(database_url=served.url, artifact_dir=blocked))
    assert outcome.status == "failed" and outcome.reasons
    assert registry.list_jobs(served.engine)[0]["status"] == "failed"
    assert registry.production(served.engine) == before


@pytest.mark.postgres
def test_full_disk_while_training_fails_the_job_cleanly(served: Served, tmp_path: Path) -> None:
    if not served.url.startswith("postgresql"):
        pytest.skip("with SQLite the database shares the full disk; PostgreSQL keeps recording")
    before = registry.production(served.engine)
    artifacts = tmp_path / "artifacts"

    def small_disk() -> None:
        # Files may not grow past 20 kB: writing the model fails with "File too large",
        # as on a full disk (SIGXFSZ ignored so the write returns an error instead).
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    env = {**os.environ, "RECSYS_DATABASE_URL": served.url, "RECSYS_ARTIFACT_DIR": str(artifacts)}
    done = subprocess.run(
        [RECSYS, "retrain"], env=env, preexec_fn=small_disk, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "File too large" in done.stdout + done.stderr
    assert registry.production(served.engine) == before
    # The temporary folder was removed; only the baselines, kept for the next run, remain.
    assert [p.name for p in artifacts.iterdir() if p.name != BASELINES_FOLDER] == []
    assert registry.list_jobs(served.engine)[0]["status"] == "failed"


def test_corrupted_artifact_is_refused_by_a_running_server(served: Served, tmp_path: Path) -> None:
    with running(served, tmp_path, **FAST) as (base, proc), httpx.Client(base_url=base) as c:
        serving = c.get("/readyz").json()["model_version"]
        candidate = train_from_database(
            served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale(), promote=False
        )
        tensors = Path(candidate.path) / "model.safetensors"
        tensors.write_bytes(tensors.read_bytes()[: len(tensors.read_bytes()) // 2])  # truncated
        # The artifact rots after the registry checked it (promote refuses a corrupt one):
        # the service must refuse it too.
        registry.promote(served.engine, candidate.version, check=False)
        wait_for(lambda: 'outcome="refused"' in c.get("/metrics").text, proc, limit=20)
        r = c.get("/v1/users/user0/recommendations")
        assert r.status_code == 200 and r.json()["model_version"] == serving
        assert c.get("/readyz").status_code == 200
    registry.promote(served.engine, serving)  # leave production as the other tests expect
