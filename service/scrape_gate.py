"""Admission of /metrics scrapes: at most a few a second, the rest wait without costing CPU.

/metrics is unauthenticated. Answering it costs about a millisecond (the exposition of every
metric), so 200 connections that scrape in a loop kept one worker's event loop full: with
every connection always ready, a request on another connection, or a new connection, waited
for whole seconds (10 s of a 10 s storm, `benchmarks/metrics_storm.py`). Answered at once
with a refusal they would loop as fast. So a scrape waits for its turn, asleep (a timer, not
a ready connection), and scrapes are admitted at most `rate` a second in arrival order; one
whose turn is more than `max_wait_s` away is refused with 503 after sleeping that long, so
a refused client cannot loop any faster. Prometheus scrapes each target every 15-60 s: a
rate of 10 a second leaves room for many scrapers, and an attack delays only other scrapes.
"""

from __future__ import annotations

import asyncio
import time


class ScrapeGate:
    def __init__(self, rate: float, max_wait_s: float) -> None:
        self.interval = 1.0 / rate
        self.max_wait_s = max_wait_s
        self._next = 0.0  # monotonic time of the next free turn

    async def admit(self) -> bool:
        """Wait for this scrape's turn; False (after `max_wait_s`) when it is too far off.
        One event loop's requests take turns without a lock: nothing awaits in between."""
        now = time.monotonic()
        turn = max(now, self._next)
        if turn - now > self.max_wait_s:
            await asyncio.sleep(self.max_wait_s)
            return False
        self._next = turn + self.interval
        if turn > now:
            await asyncio.sleep(turn - now)
        return True
