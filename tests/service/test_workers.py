"""`recsys serve --workers 2`: every worker serves the production model and reloads it, and
what any worker logs reaches the database; /metrics adds up all the workers."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from sqlalchemy import func, select

from recsys.store.db import session_scope
from recsys.store.tables import feedback, impressions
from tests.service.conftest import Served, train
from tests.service.live import running, wait_for


def _versions_by_worker(base: str) -> dict[str, str]:
    """pid -> production version, from the per-worker recsys_model_info gauge."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("recsys_model_info{") and line.endswith(" 1.0"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("role") == "production":
                found[labels["pid"]] = labels["version"]
    return found


def test_two_workers_reload_and_log_everything(served: Served, tmp_path: Path) -> None:
    with running(served, tmp_path, workers="2", impression_flush_s="0.05") as (base, proc):
        wait_for(lambda: len(_versions_by_worker(base)) == 2, proc)
        assert len(set(_versions_by_worker(base).values())) == 1

        new = train(served.engine, served.artifact_dir, seed=11).version
        wait_for(lambda: set(_versions_by_worker(base).values()) == {new}, proc)
        assert len(_versions_by_worker(base)) == 2, "both workers run the new version"

        # A fresh connection per request, so the kernel spreads them over both workers.
        rec_ids, event_ids = [], []
        for n in range(40):
            r = httpx.get(f"{base}/v1/users/user{n % 7}/recommendations", params={"k": 3})
            assert r.status_code == 200 and r.json()["model_version"] == new
            rec_ids.append(r.json()["recommendation_id"])
            event_ids.append(f"w-{uuid.uuid4().hex}")
            r = httpx.post(
                f"{base}/v1/feedback",
                json={
                    "user_id": f"user{n % 7}",
                    "item_id": r.json()["items"][0]["item_id"],
                    "kind": "click",
                    "event_id": event_ids[-1],
                    "recommendation_id": rec_ids[-1],
                },
            )
            assert r.status_code == 201, r.text

        with session_scope(served.engine) as s:
            stored = s.scalar(select(func.count()).where(feedback.c.event_id.in_(event_ids)))
        assert stored == 40, "acknowledged feedback from every worker is in the database"

        def logged() -> int:
            with session_scope(served.engine) as s:
                return int(
                    s.scalar(
                        select(func.count(func.distinct(impressions.c.recommendation_id))).where(
                            impressions.c.recommendation_id.in_(rec_ids)
                        )
                    )
                    or 0
                )

        wait_for(lambda: logged() == 40, proc, limit=20)

        metrics = httpx.get(f"{base}/metrics").text
        served_lists = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("recsys_http_requests_total{")
            and "recommendations" in line
            and 'status="200"' in line
        )
        assert served_lists >= 40, "the counters of both workers are added up"
