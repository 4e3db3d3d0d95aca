"""The impression writer: batches, written by a process of its own, and counts what it must
drop instead of blocking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from recsys.store.db import make_engine, session_scope
from recsys.store.tables import impressions
from service.impression_store import encode_row
from service.impressions import ImpressionWriter
from service.metrics import ServiceMetrics


def row(n: int) -> dict[str, object]:
    return {
        "recommendation_id": f"r{n}",
        "user_external_id": "u",
        "model_version": "v1",
        "strategy": "model",
        "items": ["a", "b"],
        "scores": [4.5, 4.0],
        "served_at": datetime.now(UTC),
    }


def test_the_queue_is_bounded_in_bytes_as_well_as_rows(engine: Engine) -> None:
    """A list of k = 1,000 encodes to tens of kilobytes: 10,000 of them queued held a
    worker's memory past a gigabyte. Lists beyond the byte limit are dropped and counted."""
    metrics = ServiceMetrics()
    big = {**row(0), "items": [f"item{n}" for n in range(1000)], "scores": [0.5] * 1000}
    size = len(encode_row(big))
    writer = ImpressionWriter(engine, metrics, queue_bytes=3 * size + size // 2, flush_s=0.01)
    for n in range(6):  # not started yet: the queue fills up
        writer.log({**big, "recommendation_id": f"big{n}"})
    writer.log(row(99))  # a small list still fits in what is left
    assert metrics.impressions_dropped._value.get() == 3
    writer.start()
    assert writer.wait_idle(10)
    for n in range(3):  # written, the room is free again
        writer.log({**big, "recommendation_id": f"again{n}"})
    assert writer.wait_idle(10)
    writer.stop()
    assert metrics.impressions_dropped._value.get() == 3
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(impressions)) == 7


def test_full_queue_drops_and_counts_then_writes_the_rest(engine: Engine) -> None:
    metrics = ServiceMetrics()
    writer = ImpressionWriter(engine, metrics, queue_size=3, batch_size=2, flush_s=0.01)
    for n in range(5):  # not started yet: the queue fills up
        writer.log(row(n))
    assert metrics.impressions_dropped._value.get() == 2
    writer.start()
    assert writer.wait_idle(10)
    writer.stop()
    with session_scope(engine) as s:
        stored = s.scalars(select(impressions.c.recommendation_id)).all()
        assert s.scalar(select(func.count()).select_from(impressions)) == 3
    assert sorted(stored) == ["r0", "r1", "r2"]
    assert metrics.impressions_logged._value.get() == 3


def test_stop_flushes_what_is_queued(engine: Engine) -> None:
    writer = ImpressionWriter(engine, ServiceMetrics(), flush_s=60)  # a long window
    writer.start()
    for n in range(10):
        writer.log(row(n))
    writer.stop()  # does not wait out the window
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(impressions)) == 10


def stored(engine: Engine) -> list[str]:
    with session_scope(engine) as s:
        return sorted(s.scalars(select(impressions.c.recommendation_id)).all())


def ended(pid: int, within_s: float = 10.0) -> bool:
    """Whether the process `pid` is gone (or a zombie nobody reaped) within the time."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@contextmanager
def started(engine: Engine) -> Iterator[tuple[ImpressionWriter, ServiceMetrics]]:
    """A writer flushing every 10 ms, and its metrics; stopped afterwards."""
    metrics = ServiceMetrics()
    writer = ImpressionWriter(engine, metrics, flush_s=0.01)
    writer.start()
    try:
        yield writer, metrics
    finally:
        writer.stop()


def test_rows_are_written_by_a_process_of_their_own(engine: Engine) -> None:
    with started(engine) as (writer, metrics):
        for n in range(3):
            writer.log(row(n))
        assert writer.wait_idle(20)
        assert writer.process_id not in (None, os.getpid())
        # Background work: it yields the CPU to the serving process when they compete.
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, writer.process_id) == min(ours + 10, 19)
        assert stored(engine) == ["r0", "r1", "r2"]
        assert metrics.impressions_logged._value.get() == 3
        assert writer.queue_size == 0
    assert writer.process_id is not None and ended(writer.process_id)


def test_a_writer_whose_process_died_starts_another_and_writes_on(engine: Engine) -> None:
    with started(engine) as (writer, metrics):
        writer.log(row(0))
        assert writer.wait_idle(20)
        first = writer.process_id
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while writer.process_id == first and time.monotonic() < deadline:
            time.sleep(0.01)  # the writer replaces a dead process by itself, even when idle
        assert writer.process_id not in (None, first)
        for n in range(1, 4):
            writer.log(row(n))
        assert writer.wait_idle(20)
        # Nothing was in flight when it died: every row is written, none counted as lost.
        assert stored(engine) == ["r0", "r1", "r2", "r3"]
        assert metrics.impressions_dropped._value.get() == 0


def test_stop_with_the_database_away_gives_up_within_its_timeout(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)  # not migrated: every insert fails, and is retried
    metrics = ServiceMetrics()
    writer = ImpressionWriter(engine, metrics, flush_s=0.01)
    writer.start()
    for n in range(5):
        writer.log(row(n))
    assert not writer.wait_idle(1.0)
    began = time.monotonic()
    writer.stop(timeout=2.0)
    assert time.monotonic() - began < 6
    assert metrics.impressions_dropped._value.get() == 5
    assert metrics.impressions_logged._value.get() == 0
    assert writer.process_id is not None and ended(writer.process_id)
    engine.dispose()


SERVING_PROCESS = """
import os, sys
from datetime import UTC, datetime
from recsys.store.db import make_engine
from service.impression_store import encode_row
from service.impressions import ImpressionWriter
from service.metrics import ServiceMetrics
writer = ImpressionWriter(make_engine(sys.argv[1]), ServiceMetrics(), flush_s=0.01)
writer.start()
writer.log({"recommendation_id": "last", "user_external_id": "u", "model_version": "v1",
            "strategy": "model", "items": ["a"], "scores": [1.0], "served_at": datetime.now(UTC)})
assert writer.wait_idle(20)
print(writer.process_id, flush=True)
os._exit(0)  # no stop(): a serving process that was killed
"""


def test_the_writer_process_ends_with_the_serving_process(engine: Engine) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVING_PROCESS, engine.url.render_as_string(hide_password=False)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ended(int(done.stdout.strip())), "the writer outlived the serving process"
    assert stored(engine) == ["last"]


def test_a_service_folder_in_the_working_directory_does_not_shadow_the_writer(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `recsys serve` started from another project that has a `service` package of its own.
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "__init__.py").write_text("raise ImportError('not recsys')\n")
    monkeypatch.chdir(tmp_path)
    with started(engine) as (writer, metrics):
        writer.log(row(0))
        assert writer.wait_idle(20)
        assert stored(engine) == ["r0"]
        assert metrics.impressions_dropped._value.get() == 0
