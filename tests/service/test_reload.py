"""Hot reload: a new production model is served within seconds, without a failed request;
a model that fails its checksum is refused and the old one keeps serving."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from recsys import registry
from recsys.config import RatingScale
from recsys.store import migrate
from recsys.training.runs import train_from_database
from service.app import create_app
from tests.service.conftest import GENRE_CONFIG, Served, train


def test_new_production_model_is_served_without_a_failed_request(
    client: TestClient, served: Served
) -> None:
    old = served.registered.version
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.get("/v1/users/user3/recommendations", params={"k": 3})
            seen.append((r.status_code, r.json().get("model_version")))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        new = train(served.engine, served.artifact_dir, seed=7).version
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not seen or seen[-1][1] != new):
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join()
    assert {status for status, _ in seen} == {200}
    versions = [v for _, v in seen]
    assert versions[0] == old and versions[-1] == new
    # Once switched, it stays switched: no request goes back to the old model.
    assert old not in versions[versions.index(new) :]


def test_corrupted_artifact_is_refused_and_old_model_keeps_serving(
    client: TestClient, served: Served
) -> None:
    serving = client.get("/readyz").json()["model_version"]
    candidate = train_from_database(
        served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale(), promote=False
    )
    tensors = Path(candidate.path) / "model.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-16] + b"\0" * 16)
    # The artifact rots after the registry checked it (promote refuses a corrupt one):
    # the service must refuse it too.
    registry.promote(served.engine, candidate.version, check=False)
    time.sleep(1.0)  # several polls
    r = client.get("/v1/users/user3/recommendations", params={"k": 3})
    assert r.status_code == 200 and r.json()["model_version"] == serving
    metrics = client.get("/metrics").text
    assert 'recsys_model_reloads_total{outcome="refused"} 1.0' in metrics
    assert client.get("/readyz").json()["ready"] is True


def test_service_without_a_model_says_so(sqlite_url: str, tmp_path: Path) -> None:
    migrate.upgrade(sqlite_url)
    served = Served(sqlite_url, tmp_path, None, None)  # type: ignore[arg-type]
    with TestClient(create_app(served.settings())) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert "no model is in production" in ready.json()["detail"]
        r = c.get("/v1/users/u/recommendations")
        assert r.status_code == 503 and "recsys train" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200
