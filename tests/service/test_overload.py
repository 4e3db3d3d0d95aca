"""Overload is a 503 with Retry-After, never a 500, and /metrics cannot exhaust the pool."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.conftest import Served


def computations(text: str) -> float:
    found = re.search(r"^recsys_monitoring_computations_total (\S+)$", text, re.M)
    assert found, "the counter of monitoring computations is exported"
    return float(found.group(1))


def test_concurrent_scrapes_compute_the_summary_once(served: Served) -> None:
    """40 scrapes at once (unauthenticated, as Prometheus and anyone else can) with a pool of
    two connections: every scrape answers at once, the summary is computed in the background
    by one of them, and the API keeps answering."""
    settings = served.settings(
        db_pool_size=2, db_max_overflow=0, db_pool_timeout_s=2, metrics_scrapes_per_s=1000
    )
    with TestClient(create_app(settings)) as c, ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: c.get("/metrics"), range(40)))
        assert [r.status_code for r in answers] == [200] * 40
        assert c.get("/readyz").json()["database"] is True
        r = c.post("/v1/feedback", json={"user_id": "u-scrape", "item_id": "film0", "value": 4})
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        while computations(c.get("/metrics").text) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Every scrape found the summary stale; one computed it (a second may start after
        # the first finished, if the cache expired meanwhile).
        assert 1 <= computations(c.get("/metrics").text) <= 2


def test_scrapes_in_a_loop_compute_once_per_refresh_interval(served: Served) -> None:
    """Scrapers looping on /metrics for longer than the summary's cache (5 s) start no second
    computation within `metrics_refresh_s`: the scrape rate does not set the monitoring's
    cost."""
    settings = served.settings(metrics_refresh_s=60, metrics_scrapes_per_s=1000)
    with TestClient(create_app(settings)) as c:
        state = c.app.state.recsys  # type: ignore[attr-defined]
        stop = time.monotonic() + 7

        def scrape(_: int) -> None:
            while time.monotonic() < stop:
                assert c.get("/metrics").status_code == 200

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(scrape, range(8)))
        deadline = time.monotonic() + 30
        while state.metrics_refresh.locked() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert computations(c.get("/metrics").text) == 1


def test_a_full_pool_is_a_503_with_retry_after(served: Served) -> None:
    settings = served.settings(
        db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.3, operator_token="op"
    )
    with TestClient(create_app(settings), headers={"Authorization": "Bearer op"}) as c:
        engine = c.app.state.recsys.engine  # type: ignore[attr-defined]
        with engine.connect():  # the pool's only connection, held
            for method, url, body in (
                ("GET", "/v1/monitoring/items?q=film", None),
                ("POST", "/v1/feedback", {"user_id": "u-full", "item_id": "film0", "value": 4}),
                ("GET", "/v1/monitoring/curves?versions=production", None),
            ):
                r = c.request(method, url, json=body)
                assert r.status_code == 503, (url, r.status_code, r.text)
                assert r.headers["retry-after"] and "retry" in r.json()["detail"]
        # The connection is back: the same requests succeed.
        assert c.get("/v1/monitoring/items?q=film").status_code == 200
