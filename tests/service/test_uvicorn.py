"""The real thing: `recsys serve` as a uvicorn process, over loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import func, select

from recsys.store.db import session_scope
from recsys.store.tables import feedback, impressions
from tests.service.conftest import Served

RECSYS = str(Path(sys.executable).parent / "recsys")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_recsys_serve_end_to_end(served: Served, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": served.url,
        "RECSYS_ARTIFACT_DIR": str(served.artifact_dir),
        "RECSYS_DEV_MODE": "true",
        "RECSYS_IMPRESSION_FLUSH_S": "5",  # long: shutdown must flush what is queued
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [RECSYS, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service did not become ready in 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as c:
            # One percent-decoding, as any HTTP server: %2541 is the id "%41".
            r = c.get("/v1/users/%2541/recommendations", params={"k": 3})
            assert r.status_code == 200 and r.json()["user_id"] == "%41"
            rec = c.get("/v1/users/user0/recommendations", params={"k": 3}).json()
            user = f"live-{uuid.uuid4().hex[:6]}"
            event = {
                "user_id": user,
                "item_id": rec["items"][0]["item_id"],
                "value": 4.5,
                "recommendation_id": rec["recommendation_id"],
            }
            assert c.post("/v1/feedback", json=event).status_code == 201
            assert "recsys_feedback_events_total" in c.get("/metrics").text
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal for the conventional status.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    with session_scope(served.engine) as s:
        assert (
            s.scalar(
                select(func.count()).where(
                    impressions.c.recommendation_id == rec["recommendation_id"]
                )
            )
            == 1
        ), "a graceful stop writes the queued impressions"
        assert (
            s.scalar(
                select(func.count()).where(feedback.c.recommendation_id == rec["recommendation_id"])
            )
            == 1
        )
