"""The real thing: `recsys serve` as a uvicorn process, over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from benchmarks.rawhttp import Call, Connection
from recsys.store.db import session_scope
from recsys.store.tables import feedback, impressions
from tests.service.conftest import N_USERS, Served
from tests.service.live import RECSYS, running


async def load_generator_answers(base: str) -> list[object]:
    """What the benchmarks' hand-written client reads, over one kept-alive connection."""
    connection = Connection(base)
    seen: list[object] = []
    try:
        for call in (
            Call.get("/v1/users/user0/recommendations", k=3),
            Call.get("/v1/users/user1/recommendations", k=3),
            Call.post("/v1/feedback", {"user_id": "u", "item_id": "film1", "value": "x"}),
        ):
            status, body = await connection.send(call)
            answer = json.loads(body)
            seen += [status, len(answer["items"]) if status == 200 else answer["detail"]]
    finally:
        await connection.close()
    return seen


def test_recsys_serve_end_to_end(served: Served, tmp_path: Path) -> None:
    # A long flush interval: a graceful stop must write what is still queued.
    with running(served, tmp_path, impression_flush_s="5") as (base, proc):
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
        *statuses, refusal = asyncio.run(load_generator_answers(base))
        assert statuses == [200, 3, 200, 3, 422] and "valid number" in str(refusal)
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal for the conventional status.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
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


def test_a_trickled_body_is_cut_off_with_408(served: Served, tmp_path: Path) -> None:
    """A client that promises 100 bytes and sends 10 no longer holds its connection (and a
    buffer) for as long as it likes."""
    with running(served, tmp_path, body_read_timeout_s="1") as (base, _):
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"user_id"'
            )
            started = time.monotonic()
            answer = b""
            while chunk := conn.recv(4096):  # the server closes the connection after it
                answer += chunk
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"RECSYS_BODY_READ_TIMEOUT_S" in answer and waited < 5
        # Everyone else is served meanwhile and after.
        assert httpx.get(f"{base}/healthz").status_code == 200


def test_a_serving_process_never_loads_torch_or_pandas(served: Served, tmp_path: Path) -> None:
    """Serving scores with numpy and reads artifacts with safetensors' numpy API: torch alone
    is ~180 MB of a worker's memory, and pandas (with pyarrow) ~70 MB, so monitoring figures
    are computed without it. The process's memory map says whether their libraries were ever
    loaded, after every kind of answer the service gives but a CSV upload, which reads the
    file with pandas."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc on this system to read a process's memory map from")
    token = "operator-" + uuid.uuid4().hex
    with running(served, tmp_path, operator_token=token) as (base, proc):
        operator = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=10, headers=operator) as c:
            listed = c.get("/v1/users/user0/recommendations", params={"k": 5})
            assert listed.status_code == 200
            film = listed.json()["items"][0]["item_id"]
            visitor = {"ratings": [{"item_id": film, "rating": 5}], "k": 5}
            assert c.post("/v1/recommendations", json=visitor).status_code == 200
            pairs = {"pairs": [{"user_id": "user0", "item_id": film}]}
            assert c.post("/v1/predictions", json=pairs).status_code == 200
            assert c.get(f"/v1/items/{film}/similar", params={"k": 3}).status_code == 200
            assert c.get("/v1/users/nobody-yet/recommendations").status_code == 200
            assert c.get("/v1/monitoring/summary").status_code == 200
            judged = c.get("/v1/monitoring/off-policy", params={"version": "production"})
            for _ in range(600):  # computed in the background: 202 until the report is in
                if judged.status_code != 202:
                    break
                time.sleep(0.2)
                judged = c.get("/v1/monitoring/off-policy", params={"version": "production"})
            assert judged.status_code == 200 and "refused" in judged.json(), judged.text
            assert c.get("/v1/monitoring/item-map").status_code == 200
            assert c.get(f"/v1/monitoring/items/{film}").status_code == 200
            event = {"user_id": "user0", "item_id": film, "kind": "click"}
            assert c.post("/v1/feedback", json=event).status_code == 201
            assert c.get("/v1/models/online").status_code == 200
            for page in ("", "/loop", "/models"):
                assert c.get(f"/dashboard{page}").status_code == 200
            time.sleep(0.5)
            assert "recsys_alert" in c.get("/metrics").text  # the background summary ran
        loaded = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "libtorch" not in loaded
    assert "pandas/_libs" not in loaded and "libarrow" not in loaded
    mine = maps.read_text()  # the check can fail: this test process has both
    assert "libtorch" in mine and "pandas/_libs" in mine


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_first_visits_in_hand_are_ranked_together(served: Served, tmp_path: Path) -> None:
    # The ranking cache off: every request ranks its user, as a first visit does.
    users = [f"user{u}" for u in range(N_USERS)] * 2

    async def at_once(base: str) -> list[list[str]]:
        limits = httpx.Limits(max_connections=len(users))
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
            answers = await asyncio.gather(
                *(c.get(f"/v1/users/{u}/recommendations", params={"k": 5}) for u in users)
            )
        assert {a.status_code for a in answers} == {200}
        strategies.extend(a.json()["strategy"] for a in answers)
        return [[item["item_id"] for item in a.json()["items"]] for a in answers]

    strategies: list[str] = []
    with running(served, tmp_path, recommend_cache_users="0") as (base, _):
        together = asyncio.run(at_once(base))
        metrics = httpx.get(f"{base}/metrics").text
        with httpx.Client(base_url=base, timeout=10) as c:
            one_by_one = [
                [i["item_id"] for i in c.get(f"/v1/users/{u}/recommendations?k=5").json()["items"]]
                for u in users
            ]
    assert together == one_by_one
    batches = _metric(metrics, "recsys_ranking_batch_size_count")
    ranked = _metric(metrics, "recsys_ranking_batch_size_sum")
    # Learned rankings only: users who sent feedback in other tests get live lists, which
    # are folded in one by one.
    assert ranked == strategies.count("model") > len(users) / 2
    assert batches < ranked, "no two concurrent first visits were ranked together"


async def _storm_and_probe(
    base: str, scrapers: int, seconds: float
) -> tuple[list[tuple[int, float]], list[int]]:
    """`scrapers` connections scraping /metrics in a loop for `seconds`; meanwhile, from the
    second second on, recommendations each on a new connection. Returns each scrape's
    status and seconds, and the recommendations' statuses."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    scrapes: list[tuple[int, float]] = []

    async def scrape() -> None:
        connection = Connection(base)
        try:
            while loop.time() < stop:
                t0 = loop.time()
                status, _ = await connection.send(Call.get("/metrics"))
                scrapes.append((status, loop.time() - t0))
        finally:
            await connection.close()

    async def probe() -> list[int]:
        await asyncio.sleep(1.5)
        statuses = []
        while loop.time() < stop - 1:
            connection = Connection(base)
            status, _ = await connection.send(Call.get("/v1/users/user0/recommendations", k=3))
            statuses.append(status)
            await connection.close()
            await asyncio.sleep(0.2)
        return statuses

    probes, *_ = await asyncio.gather(probe(), *(scrape() for _ in range(scrapers)))
    assert probes is not None
    return scrapes, probes


def test_scrapers_in_a_loop_take_turns(served: Served, tmp_path: Path) -> None:
    """Connections scraping /metrics in a loop without credentials kept the worker's event
    loop full (each always had a request ready), so that a request on a new connection
    waited for the whole storm (benchmarks/metrics_storm.py measures it). Scrapes now take
    turns asleep: at most the configured rate is answered, the rest get 503 only after
    their wait, so a refused client cannot loop any faster, and other requests answer."""
    settings = {"metrics_scrapes_per_s": "5", "metrics_scrape_wait_s": "1"}
    with running(served, tmp_path, **settings) as (base, _):
        scrapes, probes = asyncio.run(_storm_and_probe(base, 120, 6.0))
    assert probes and set(probes) == {200}
    statuses = [status for status, _ in scrapes]
    assert set(statuses) == {200, 503}
    # 5 a second for the 6 s of the storm and the last second of waiting, the first at once.
    assert statuses.count(200) <= 5 * (6 + 1) + 1, statuses.count(200)
    refused = [seconds for status, seconds in scrapes if status == 503]
    assert min(refused) >= 0.9, min(refused)


def test_simulated_traffic_sends_the_client_key(served: Served, tmp_path: Path) -> None:
    """Against a service in production mode, every simulated feedback got 401: the command
    could not send a key. With --api-key it does; without, it stops at once and says so."""
    held_out = tmp_path / "held-out.csv"
    rows = [f"user{u},film{(u * 7 + i) % 60},4.5" for u in range(20) for i in range(3)]
    held_out.write_text("user_id,item_id,rating\n" + "\n".join(rows) + "\n")
    production = {
        "dev_mode": "false",
        "operator_token": "simulate-operator-token-1234",
        "client_api_keys": "simulate-key",
        "reads_require_key": "true",
    }
    with running(served, tmp_path, **production) as (base, _):
        args = [RECSYS, "simulate-traffic", "--url", base, "--rounds", "1", "--users", "10"]
        args += ["--pause", "0", "--held-out", str(held_out)]
        env = {**os.environ, "RECSYS_DATABASE_URL": served.url}
        env.pop("RECSYS_API_KEY", None)
        keyless = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert keyless.returncode == 1 and "--api-key" in keyless.stderr, keyless.stderr
        assert "Traceback" not in keyless.stderr
        keyed = subprocess.run(
            [*args, "--api-key", "simulate-key"], env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert keyed.returncode == 0, keyed.stderr
        assert "(0 errors)" in keyed.stdout and "simulated 1" in keyed.stdout, keyed.stdout


async def _same_event_at_once(
    base: str, event: dict[str, object], copies: int
) -> list[dict[str, int]]:
    """`copies` connections sending the same event at the same moment; their answers."""
    connections = [Connection(base) for _ in range(copies)]
    try:
        # Connected first, so that the requests themselves arrive together.
        await asyncio.gather(*(c.send(Call.get("/healthz")) for c in connections))
        call = Call.post("/v1/feedback", event)
        sent = await asyncio.gather(*(c.send(call) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    assert all(status == 201 for status, _ in sent), sent
    return [json.loads(body) for _, body in sent]


def test_concurrent_copies_of_one_event_store_it_once(served: Served, tmp_path: Path) -> None:
    """30 concurrent requests with one event_id, five rounds: the answers together claimed
    2-8 stores and the rating was written for several. Exactly one is stored, 29 are
    duplicates, and one rating is written, each round."""
    with running(served, tmp_path) as (base, _):
        for round_ in range(5):
            event_id = f"race-{uuid.uuid4().hex[:8]}"
            event = {"user_id": f"racer{round_}", "item_id": "film3", "value": 4.0}
            event["event_id"] = event_id
            answers = asyncio.run(_same_event_at_once(base, event, 30))
            assert sum(a["stored"] for a in answers) == 1, answers
            assert sum(a["duplicates"] for a in answers) == 29
            assert sum(a["ratings"] for a in answers) == 1
            with session_scope(served.engine) as s:
                same = feedback.c.event_id == event_id
                rows = s.scalar(select(func.count()).select_from(feedback).where(same))
            assert rows == 1
