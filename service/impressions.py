"""Impression logging off the request path: a bounded queue and a writer thread that commits
in batches. A request only appends to the queue; when the queue is full (the database is slow
or away for long), impressions are dropped and counted rather than slowing down answers.
Feedback never goes through here: it is committed before it is acknowledged."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from recsys.store.db import session_scope
from recsys.store.events import insert_impressions
from service.metrics import ServiceMetrics

log = logging.getLogger("recsys.service")


class ImpressionWriter:
    def __init__(
        self,
        engine: Engine,
        metrics: ServiceMetrics,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_s: float = 0.5,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_s = flush_s
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    def log(self, row: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(row)
            self._idle.clear()
        except queue.Full:
            self.metrics.impressions_dropped.inc()

    @property
    def queue_size(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within `timeout`), then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once everything queued so far is committed (for tests and shutdown)."""
        return self._idle.wait(timeout)

    def _take_batch(self) -> list[dict[str, Any]]:
        """Sleep for `flush_s`, then take what has queued (up to a batch). The writer sleeps
        on a timer rather than on the queue: waking for every list served would cost the
        request threads a GIL hand-over each, and a database commit each under load."""
        if self._queue.qsize() < self.batch_size:
            self._stop.wait(self.flush_s)
        batch: list[dict[str, Any]] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        backoff = 0.2
        batch: list[dict[str, Any]] = []
        while True:
            if not batch:
                batch = self._take_batch()
            self.metrics.impression_queue.set(self._queue.qsize())
            if not batch:
                if self._queue.empty():
                    self._idle.set()
                if self._stop.is_set():
                    return
                continue
            try:
                with session_scope(self.engine) as s:
                    insert_impressions(session=s, rows=batch)
            except SQLAlchemyError as exc:
                if self._stop.is_set():
                    self.metrics.impressions_dropped.inc(len(batch) + self._queue.qsize())
                    log.error("shutting down with the database away: impressions dropped")
                    return
                # Keep the batch and retry; meanwhile new impressions queue up (or drop).
                log.warning("impressions not written (%s); retrying", type(exc).__name__)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.metrics.impressions_logged.inc(len(batch))
            backoff = 0.2
            batch = []
