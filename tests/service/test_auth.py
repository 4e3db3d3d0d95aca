"""Credentials and limits: who may write, who may act, what the service refuses to start
with, and bodies too large to read."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from recsys import keys
from recsys.errors import ConfigError
from service.app import create_app
from tests.service.conftest import Served
from tests.service.live import RECSYS

TOKEN = "a-long-operator-token"
CLIENT_KEY = "client-key-from-env"
EVENT = {"user_id": "auth-user", "item_id": "film0", "value": 4.0}


@pytest.fixture(scope="module")
def locked(served: Served) -> Iterator[TestClient]:
    """Production settings: no dev mode, a client key in the environment, small bodies."""
    settings = served.settings(
        dev_mode=False,
        operator_token=TOKEN,
        client_api_keys=f"{CLIENT_KEY}, another-key",
        max_body_bytes=10_000,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_refuses_to_start_without_a_real_operator_token(served: Served) -> None:
    for token in (None, "", "change-me", "short"):
        with pytest.raises(ConfigError, match="refusing to start"):
            create_app(served.settings(dev_mode=False, operator_token=token))
    env = {**os.environ, "RECSYS_DATABASE_URL": served.url, "RECSYS_DEV_MODE": "false"}
    env.pop("RECSYS_OPERATOR_TOKEN", None)
    done = subprocess.run([RECSYS, "serve", "--port", "1"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "RECSYS_OPERATOR_TOKEN is not set" in done.stderr


def test_writes_need_a_client_key(locked: TestClient) -> None:
    assert locked.post("/v1/feedback", json=EVENT).status_code == 401
    wrong = locked.post("/v1/feedback", json=EVENT, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403 and "not a valid client key" in wrong.json()["detail"]
    ok = locked.post("/v1/feedback", json=EVENT, headers={"X-API-Key": "another-key"})
    assert ok.status_code == 201
    assert locked.put("/v1/items/film0", json={"title": "x"}).status_code == 401
    # Reads stay open unless configured otherwise.
    assert locked.get("/v1/users/user0/recommendations").status_code == 200
    # An operator token is not a client key, and the reverse.
    r = locked.post("/v1/feedback", json=EVENT, headers={"X-API-Key": TOKEN})
    assert r.status_code == 403
    r = locked.get("/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert r.status_code == 403


def test_keys_from_the_database_work_until_revoked(locked: TestClient, served: Served) -> None:
    client_key = keys.create(served.engine, "frontend")
    operator_key = keys.create(served.engine, "ops", role=keys.OPERATOR)
    locked.app.state.recsys.models.refresh()  # type: ignore[attr-defined]
    ok = locked.post("/v1/feedback", json=EVENT, headers={"X-API-Key": client_key})
    assert ok.status_code == 201
    assert (
        locked.get("/v1/jobs", headers={"Authorization": f"Bearer {operator_key}"}).status_code
        == 200
    )
    keys.revoke(served.engine, "frontend")
    locked.app.state.recsys.models.refresh()  # type: ignore[attr-defined]
    assert (
        locked.post("/v1/feedback", json=EVENT, headers={"X-API-Key": client_key}).status_code
        == 403
    )
    assert all(k.name != client_key for k in keys.list_keys(served.engine))  # names, not keys


def test_without_any_key_configured_writes_are_refused(served: Served) -> None:
    with TestClient(create_app(served.settings(dev_mode=False, operator_token=TOKEN))) as c:
        r = c.post("/v1/feedback", json=EVENT)
        assert r.status_code == 403 and "RECSYS_CLIENT_API_KEYS" in r.json()["detail"]


def test_reads_can_require_a_key(served: Served) -> None:
    settings = served.settings(reads_require_key=True, client_api_keys=CLIENT_KEY)
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/v1/users/user0/recommendations").status_code == 401
        r = c.get("/v1/users/user0/recommendations", headers={"X-API-Key": CLIENT_KEY})
        assert r.status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open
        # Each route names its own check (no router-wide one): none of /v1 may forget it.
        routes = [
            (method, path)
            for path, operations in app.openapi()["paths"].items()
            if path.startswith("/v1")
            for method in operations
        ]
        assert len(routes) > 15
        for method, path in routes:
            answer = c.request(method, re.sub(r"{[^}]+}", "film0", path), json={})
            assert answer.status_code == 401, (method, path, answer.text)


def test_bodies_over_the_limit_are_413(locked: TestClient) -> None:
    big = {"events": [EVENT] * 400}  # about 20 kB
    r = locked.post("/v1/feedback", json=big, headers={"X-API-Key": CLIENT_KEY})
    assert r.status_code == 413 and "RECSYS_MAX_BODY_BYTES" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"events": ['
        for _ in range(400):
            yield b'{"user_id": "u", "item_id": "film0", "value": 4.0},'
        yield b"]}"

    r = locked.post(
        "/v1/feedback",
        content=chunks(),
        headers={"X-API-Key": CLIENT_KEY, "content-type": "application/json"},
    )
    assert r.status_code == 413


def test_keys_cli(served: Served) -> None:
    env = {**os.environ, "RECSYS_DATABASE_URL": served.url}
    made = subprocess.run(
        [RECSYS, "keys", "create", "cli-app"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("rk_") and keys.matches(key, keys.active_hashes(served.engine), "client")
    listed = subprocess.run([RECSYS, "keys", "list"], env=env, capture_output=True, text=True)
    assert "cli-app" in listed.stdout and key not in listed.stdout
    again = subprocess.run(
        [RECSYS, "keys", "create", "cli-app"], env=env, capture_output=True, text=True
    )
    assert again.returncode == 1 and "exists" in again.stderr
