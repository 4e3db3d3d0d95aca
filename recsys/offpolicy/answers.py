"""Off-policy reports as the service answers them: computed in a thread of the monitoring
process and answered from there, the last one while a newer one is computed.

A report ranks up to 200,000 logged lists again with the judged model: about a minute at a
week of busy traffic. Computed on request, every visit to the Models page waited that minute
per version. Here a request is answered at once with the newest report of its version,
window and exploration share, however old (its `computed_at` and `age_s` say how old); one
older than REUSE_S also starts a newer one, which the next request gets. A request with no
report yet waits up to `RECSYS_OFF_POLICY_WAIT_S` for the first, then is told that it is on
its way (HTTP 202, `status: "computing"`), and asks again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as Pending
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine

from recsys import registry
from recsys.config import Settings
from recsys.data import timestamps

REUSE_S = 300.0
"""Age at which a report is computed again (it is still answered until the new one is in)."""
RETRY_AFTER_S = 5
"""What a request answered "computing" is told to wait before it asks again."""

Key = tuple[str, str, float, float | None]
Json = dict[str, Any]


class Reports:
    """The newest report per (database, version, hours, exploration share), and the
    computations under way, one at a time in a thread of their own."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="off-policy")
        self._lock = threading.Lock()
        self._newest: dict[Key, tuple[float, Json]] = {}
        self._running: dict[Key, Future[Json]] = {}

    def answer(self, key: Key, compute: Callable[[], Json], wait_s: float) -> Json:
        """The newest report of `key` (starting a newer one when it is older than REUSE_S),
        or, without one, the first if it is in within `wait_s`, else a "computing" answer. A
        computation's error reaches the requests that wait for it."""
        now = time.monotonic()
        with self._lock:
            newest = self._newest.get(key)
            running = self._running.get(key)
            if running is None and (newest is None or now - newest[0] > REUSE_S):
                running = self._running[key] = self._pool.submit(self._compute, key, compute)
        if newest is None:
            assert running is not None  # started above when there was nothing to answer
            try:
                return running.result(timeout=wait_s)
            except Pending:
                return computing(key[1])
        at, report = newest
        return {**report, "age_s": round(now - at, 1), "refreshing": running is not None}

    def _compute(self, key: Key, compute: Callable[[], Json]) -> Json:
        try:
            report = compute()
            with self._lock:
                self._newest[key] = (time.monotonic(), report)
            return {**report, "age_s": 0.0, "refreshing": False}
        finally:
            with self._lock:
                del self._running[key]


def computing(version: str) -> Json:
    return {
        "status": "computing",
        "version": version,
        "retry_after_s": RETRY_AFTER_S,
        "detail": "the report is being computed (it ranks up to 200,000 logged lists again); "
        f"ask again in {RETRY_AFTER_S} s",
    }


_REPORTS = Reports()
"""The monitoring process's reports."""


def off_policy(
    settings: Settings,
    version: str,
    hours: float,
    explore: float | None,
    engine: Callable[[str], Engine],
) -> Json:
    """`recsys.offpolicy.run.off_policy_report` of `version` on the lists logged over the
    last `hours` (`explore`: the exploration share it would serve with; None: ours), as
    JSON with its verdict, answered as `Reports.answer` does. It loads the models, the lists
    and pandas: in the monitoring process, not in a serving worker."""
    key = (settings.database_url, version, hours, explore)
    compute = partial(_report, settings, version, hours, explore, engine)
    return _REPORTS.answer(key, compute, settings.off_policy_wait_s)


def _report(
    settings: Settings,
    version: str,
    hours: float,
    explore: float | None,
    engine: Callable[[str], Engine],
) -> Json:
    from recsys.offpolicy.run import off_policy_report, verdict

    since = datetime.now(UTC) - timedelta(hours=hours)
    db = engine(settings.database_url)
    target = None if explore is None else settings.explore_policy_at(explore)
    report = off_policy_report(db, settings, version, since, target)
    production = registry.production(db)
    called = verdict(report, production["version"] if production else None, settings)
    return {
        "since": timestamps.iso(since),
        "computed_at": timestamps.iso(datetime.now(UTC)),
        **report.as_json(),
        "verdict": called,
    }
