"""Impression logging off the request path: a request appends its row to a bounded queue; a
thread sends what has queued, every `flush_s` or `batch_size` rows, to a process of its own
that commits it (`service.impression_store`). Encoding a row (orjson, ~2 us) is the only work
of writing it left in the serving process: committing it here, in a thread, held the GIL for
~50 us a list under load. When the queue is full (the database is slow or away for long),
rows are dropped and counted rather than slowing down answers. Feedback never goes through
here: it is committed before it is acknowledged."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine

from service.impression_store import COUNT, encode_row, write_message
from service.metrics import ServiceMetrics

log = logging.getLogger("recsys.service")


# Where `service` is imported from: the process imports the same package however this one
# was started. It replaces the working directory at the head of the child's path: `python -m`
# would look there first, and a user's own `service/` folder would shadow ours.
_ROOT = str(Path(__file__).resolve().parent.parent)
_MAIN = "import sys; sys.path[0] = sys.argv[1]; from service.impression_store import main; main()"


@dataclass
class _Process:
    """The writing process (rows go to its standard input) and the thread that reads its
    acknowledgements."""

    process: subprocess.Popen[bytes]
    acks: threading.Thread

    @property
    def rows(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Close our end of its input, once it has ended."""
        # What was left in the buffer cannot reach a process that ended.
        with contextlib.suppress(OSError):
            self.rows.close()


class ImpressionWriter:
    def __init__(
        self,
        engine: Engine,
        metrics: ServiceMetrics,
        *,
        queue_size: int = 10_000,
        queue_bytes: int = 32 << 20,
        batch_size: int = 500,
        flush_s: float = 0.5,
    ) -> None:
        # The process opens its own engine: connections do not cross processes.
        self.database_url = engine.url.render_as_string(hide_password=False)
        self.metrics = metrics
        self.queue_limit = queue_size
        # Rows differ a hundredfold in size (k = 10 to 1,000 items, each with scores,
        # predictions and propensities): a queue bounded by rows alone held 10,000 lists of
        # 40 KB, and a worker grew past a gigabyte while the database fell behind.
        self.queue_bytes = queue_bytes
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self.batch_size = batch_size
        self.flush_s = flush_s
        self._rows: deque[bytes] = deque()  # encoded (encode_row)
        self._sending = 0  # taken from the queue, not yet sent
        self._in_flight = 0  # sent to the process, not yet acknowledged
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._writer: _Process | None = None

    def log(self, row: dict[str, Any]) -> None:
        encoded = encode_row(row)
        with self._bytes_lock:  # a counter shared with the sender: += is not atomic
            fits = (
                len(self._rows) < self.queue_limit
                and self._queued_bytes + len(encoded) <= self.queue_bytes
            )
            if fits:
                self._queued_bytes += len(encoded)
        if fits:
            # A deque, not a queue.Queue: its append needs no lock of its own.
            self._rows.append(encoded)
        else:
            self.metrics.impressions_dropped.inc()

    @property
    def queue_size(self) -> int:
        """Rows logged and not yet committed."""
        return len(self._rows) + self._sending + self._in_flight

    @property
    def process_id(self) -> int | None:
        """The writing process's pid (None before `start`)."""
        return None if self._writer is None else self._writer.process.pid

    def start(self) -> None:
        self._writer = self._spawn()
        self._sender = threading.Thread(target=self._send_loop, name="impressions", daemon=True)
        self._sender.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within `timeout`), then end the thread and the process."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._sender is not None:
            self._sender.join(timeout)
        writer = self._writer
        if writer is None:
            return
        try:
            writer.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("shutting down with the database away: impressions dropped")
            writer.process.kill()
            writer.process.wait()
            if self._sender is not None:
                self._sender.join(1.0)  # a send blocked on the full pipe now fails at once
        writer.acks.join(1.0)  # the acknowledgements sent before the process ended
        writer.close()
        self._lose_in_flight()
        left = 0
        with contextlib.suppress(IndexError):  # taken one by one: the sender may still run
            while True:
                self._rows.popleft()
                left += 1
        if left:
            self.metrics.impressions_dropped.inc(left)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once everything logged so far is committed (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self.queue_size:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _spawn(self) -> _Process:
        # It multiplies no matrices: no BLAS threads, their buffers or their start-up.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(
            [sys.executable, "-c", _MAIN, _ROOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        # If it died at once (it could not import), the sender's next turn sees it and
        # starts another: the service keeps serving meanwhile.
        with contextlib.suppress(OSError):
            write_message(process.stdin, pickle.dumps(self.database_url))
        reader = threading.Thread(
            target=self._read_acks, args=(process.stdout,), name="impression-acks", daemon=True
        )
        reader.start()
        return _Process(process, reader)

    def _read_acks(self, acks: IO[bytes]) -> None:
        with acks:
            while len(ack := acks.read(COUNT.size)) == COUNT.size:
                (n,) = COUNT.unpack(ack)
                # Counted before the rows leave the queue: wait_idle then sees the count.
                self.metrics.impressions_logged.inc(n)
                with self._lock:
                    self._in_flight -= n

    def _send_loop(self) -> None:
        """Send what has queued every `flush_s` (sooner once a batch is full), and the end
        message on stop. The thread sleeps on a timer rather than on the queue: waking for
        every list served would cost the request threads a GIL hand-over each."""
        while True:
            if len(self._rows) < self.batch_size:
                self._stop.wait(self.flush_s)
            stopping = self._stop.is_set()
            # Also while nothing is queued: a process that died is replaced, and what it had
            # not acknowledged counted, before rows are sent to it (a write can still succeed
            # into the pipe of a process that is being killed).
            self._alive()
            self._send_queued()
            self.metrics.impression_queue.set(self.queue_size)
            if stopping:
                self._send_end()
                return

    def _send_queued(self) -> None:
        while self._rows:
            # Counted as sending before they leave the queue, so that wait_idle sees them.
            size = min(self.batch_size, len(self._rows))
            self._sending = size
            batch = [self._rows.popleft() for _ in range(size)]
            with self._bytes_lock:
                self._queued_bytes -= sum(len(b) for b in batch)
            message = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            alive = self._alive()
            # In flight before no longer sending: wait_idle always sees the batch in one of them.
            with self._lock:
                if alive:
                    self._in_flight += size
                self._sending = 0
            if not alive:  # stopping, and it was killed: nobody will write these
                self.metrics.impressions_dropped.inc(size)
                continue
            writer = self._process()
            try:
                write_message(writer.rows, message)
            except (OSError, ValueError):  # its input broke (or stop closed it): the batch is
                # lost with what the process had not written
                writer.process.kill()
                writer.process.wait()
                self._alive()

    def _send_end(self) -> None:
        """No more rows: the process ends once it has written what it was sent."""
        with contextlib.suppress(OSError, ValueError):  # it ended already
            write_message(self._process().rows, b"")

    def _process(self) -> _Process:
        assert self._writer is not None, "start() first"
        return self._writer

    def _alive(self) -> bool:
        """Whether the process runs. If it ended, what it had not acknowledged is counted as
        dropped and, unless stopping (it was killed for overstaying), another one starts."""
        writer = self._process()
        if writer.is_alive():
            return True
        writer.acks.join(1.0)  # what it acknowledged before it ended
        writer.close()
        self._lose_in_flight()
        if self._stop.is_set():
            return False
        log.error(
            "the impression writer's process ended (exit code %s): starting another",
            writer.process.poll(),
        )
        self._writer = self._spawn()
        return True

    def _lose_in_flight(self) -> None:
        with self._lock:
            lost, self._in_flight = self._in_flight, 0
        if lost:
            self.metrics.impressions_dropped.inc(lost)
