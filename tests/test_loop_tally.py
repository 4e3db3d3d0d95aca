"""The feedback-loop tally: figures of merged (aged) buckets equal those of the rows, and a
day of traffic ends in a bounded number of cells; the live tally, refreshed between writes
on a real database, counts each row once and agrees with the figures read row by row."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from recsys import monitoring, monitoring_summary
from recsys.config import Settings
from recsys.data.ingest import ingest_csv
from recsys.loop_live import OVERLAP_S, LiveTally
from recsys.loop_tally import Reply, Served, Tally
from recsys.monitoring_summary import MonitoringProcess, ServingFacts
from recsys.store.db import session_scope
from recsys.store.events import FeedbackEvent, insert_impressions, load_served, record_feedback
from recsys.store.tables import feedback, snapshots

DAY = 86_400.0
NOW = 1_790_000_000.0  # a whole hour, so that hourly buckets line up with the day


def traffic(seed: int, n: int, span: float) -> tuple[list[Served], list[Reply]]:
    """`n` lists over the last `span` seconds before NOW from two versions, a fifth of them
    explored, and replies to a third of them (ratings, clicks, skips) a few seconds later."""
    rng = np.random.default_rng(seed)
    lists, replies = [], []
    for at in np.sort(NOW - span + rng.random(n) * (span - 60)):
        version = "A" if rng.random() < 0.7 else "B"
        share = 0.1 if rng.random() < 0.2 else 0.0
        shown = [f"i{x}" for x in rng.choice(300, 5, replace=False)]
        lists.append(Served(float(at), version, share, shown))
        if rng.random() < 1 / 3:
            kind = str(rng.choice(["rating", "click", "skip"]))
            value = float(rng.integers(1, 6)) if kind == "rating" else None
            reply = Reply(float(at) + 5, kind, value, float(at), version, share, 3.5)
            replies.append(reply)
    replies.append(Reply(NOW - 30, "rating", 5.0))  # answers no list
    return lists, replies


def same(a: Any, b: Any) -> None:
    """Equal, floats to 1e-9."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            same(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    else:
        assert a == b


def test_buckets_merged_as_the_span_grows_keep_the_figures() -> None:
    lists, replies = traffic(0, 6_000, DAY)
    fine = Tally.of(lists, replies, liked=4.0)
    rolled = Tally.of(lists, replies, liked=4.0)
    rolled.roll(NOW, keep_s=DAY + 3600)
    catalog = monitoring.Catalog(300, {f"i{x}": float(x) for x in range(300)})
    # Counted straight into hourly buckets, as a live tally's first read of a day does.
    hourly = Tally(4.0, width=3600)
    for served in lists:
        hourly.add_list(served)
    for reply in replies:
        hourly.add_reply(reply)
    a, b, c = fine.window(NOW - DAY), rolled.window(NOW - DAY), hourly.window(NOW - DAY)
    assert rolled.width == 3600 and b.widest == c.widest == 3600
    for other in (b, c):
        same(monitoring.figures(a, catalog), monitoring.figures(other, catalog))
        same(monitoring.versions(a), monitoring.versions(other))
        same(monitoring.shares(a, catalog), monitoring.shares(other, catalog))
        same(monitoring.periods(a, catalog, freq="h"), monitoring.periods(other, catalog, freq="h"))
    # The trend splits production's lists at a bucket: an hour's lists may change sides.
    t_fine, t_rolled = monitoring.trend(a, version="A"), monitoring.trend(b, version="A")
    total = t_fine["earlier_slots"] + t_fine["later_slots"]  # type: ignore[operator]
    assert t_rolled["earlier_slots"] + t_rolled["later_slots"] == total  # type: ignore[operator]
    an_hour = 6_000 * 0.7 * 5 / 24
    assert abs(t_rolled["earlier_slots"] - t_fine["earlier_slots"]) < an_hour  # type: ignore[operator]
    # A day at 10-second buckets is thousands of cells; merged, hours times versions and
    # shares, however many lists the day served.
    assert len(fine.lists) > 3_000
    assert len(rolled.lists) <= 25 * 2 * 2
    assert monitoring.freq_for(b) == "h"


def test_the_bucket_width_follows_the_span_of_the_lists() -> None:
    """10 s while the lists span ten minutes, minutes up to three hours, then hours: what
    the dashboard charts them at (`monitoring.freq_for`)."""
    for span, width in ((300, 10), (2 * 3600, 60), (5 * 3600, 3600)):
        lists, replies = traffic(2, 400, span)
        tally = Tally.of(lists, replies, liked=4.0)
        tally.roll(NOW, keep_s=DAY)
        window = tally.window(NOW - DAY)
        assert tally.width == window.widest == width
        assert monitoring.BUCKET_SECONDS[monitoring.freq_for(window)] == width


def test_buckets_that_ended_before_the_kept_span_are_dropped() -> None:
    lists, replies = traffic(1, 500, 2 * DAY)
    tally = Tally.of(lists, replies, liked=4.0)
    tally.roll(NOW, keep_s=DAY)
    kept = sum(c.lists for c in tally.lists.values())
    # Kept: the lists of every 10-second bucket that ends at or after NOW - DAY.
    assert kept == sum(s.at // 10 * 10 + 10 >= NOW - DAY for s in lists)
    assert 0 < kept < len(lists)


@pytest.fixture
def catalog_db(engine: Engine, tmp_path: Path) -> Engine:
    rows = [f"u{n},i{n % 6},4,{1_000 + n}" for n in range(30)]
    csv = tmp_path / "r.csv"
    csv.write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    ingest_csv(engine, csv)
    return engine


def _lists(engine: Engine, names: list[str], at: float, version: str = "v1") -> None:
    rows = [
        {
            "recommendation_id": name,
            "user_external_id": "u1",
            "model_version": version,
            "strategy": "model",
            "items": [f"i{(n + j) % 6}" for j in range(3)],
            "scores": [3.0, 2.0, 1.0],
            "predicted": [4.5, 4.0, 3.5],
            "served_at": datetime.fromtimestamp(at, UTC),
            "policy": {"explore_share": 0.1} if n % 2 else None,
        }
        for n, name in enumerate(names)
    ]
    with session_scope(engine) as s:
        insert_impressions(session=s, rows=rows)


def _answers(engine: Engine, events: list[FeedbackEvent]) -> None:
    with session_scope(engine) as s:
        record_feedback(session=s, events=events)


def test_the_live_tally_counts_each_row_once_and_agrees_with_the_rows(
    catalog_db: Engine,
) -> None:
    engine = catalog_db
    now = time.time()
    live = LiveTally(engine, liked_threshold=4.0)
    _lists(engine, ["a1", "a2", "a3"], now - 600)
    _answers(engine, [FeedbackEvent("u1", "i0", "rating", 5.0, recommendation_id="a1"),
                      FeedbackEvent("u2", "i2", "click", recommendation_id="a2")])  # fmt: skip
    live.refresh(now)
    # Stored after that refresh: a list stamped before it (committed late, within the
    # overlap), one after it, feedback on old and new lists and on none.
    _lists(engine, ["late"], now - 30, version="v2")
    _lists(engine, ["b1", "b2"], now + 20)
    _answers(engine, [FeedbackEvent("u3", "i1", "rating", 2.0, recommendation_id="late"),
                      FeedbackEvent("u4", "i3", "rating", 4.0, recommendation_id="b2"),
                      FeedbackEvent("u5", "i4", "rating", 3.0)])  # fmt: skip
    live.refresh(now + 60)
    live.refresh(now + 90)  # reads the overlap again: nothing is counted twice
    got = _agrees_with_rows(engine, live, since=now - 3600)
    assert got["lists_served"] == 6 and got["feedback"] == 5
    # A window older than the tally's first read is not answered from it.
    assert live.window(now - 2 * 86_400) is None


def _agrees_with_rows(engine: Engine, live: LiveTally, since: float) -> dict[str, Any]:
    """The figures of the tally's window, after checking them against the rows'."""
    window = live.window(since)
    assert window is not None
    with session_scope(engine) as s:
        served, fb = load_served(session=s, since=datetime.fromtimestamp(since, UTC))
    rows = monitoring.window_of(served, fb, liked_threshold=4.0)
    catalog = monitoring.Catalog(6, {f"i{n}": float(n) for n in range(6)})
    got = monitoring.figures(window, catalog)
    same(got, monitoring.figures(rows, catalog))
    same(monitoring.versions(window), monitoring.versions(rows))
    same(monitoring.shares(window, catalog), monitoring.shares(rows, catalog))
    freq = monitoring.freq_for(window)
    same(
        monitoring.periods(window, catalog, freq=freq), monitoring.periods(rows, catalog, freq=freq)
    )
    return got


def test_a_new_process_starts_from_the_saved_tally_and_reads_only_what_came_after(
    catalog_db: Engine,
) -> None:
    engine = catalog_db
    now = time.time()
    _lists(engine, ["a1", "a2", "a3"], now - 7200)
    _answers(engine, [FeedbackEvent("u1", "i0", "rating", 5.0, recommendation_id="a1")])
    LiveTally(engine, liked_threshold=4.0).refresh(now)  # the process before: saves at once
    # After its last save: a list stamped before it (committed late, within the overlap),
    # newer lists, and answers to old and new ones.
    _lists(engine, ["late"], now - 30, version="v2")
    _lists(engine, ["b1", "b2"], now + 20)
    _answers(engine, [FeedbackEvent("u2", "i1", "rating", 2.0, recommendation_id="a2"),
                      FeedbackEvent("u3", "i3", "click", recommendation_id="b2")])  # fmt: skip
    restarted = LiveTally(engine, liked_threshold=4.0)
    restarted.refresh(now + 60)
    assert (restarted.lists_read, restarted.replies_read) == (3, 2)
    got = _agrees_with_rows(engine, restarted, since=now - 3 * 3600)
    assert got["lists_served"] == 6 and got["feedback"] == 3
    # Counted by other rules, or too old to reach into the day: read whole.
    other = LiveTally(engine, liked_threshold=3.5)
    other.refresh(now + 60)
    assert other.lists_read == 6
    late = LiveTally(engine, liked_threshold=4.0)
    late.refresh(now + late.keep_s + 600)
    assert late.complete_since == now + 600


def test_without_a_table_for_saves_the_tally_still_counts(catalog_db: Engine) -> None:
    """A database not yet migrated to hold saves (a replica of the new code on the old
    schema): nothing is restored or saved, and the figures stand."""
    engine = catalog_db
    snapshots.drop(engine)
    now = time.time()
    _lists(engine, ["a1", "a2"], now - 60)
    live = LiveTally(engine, liked_threshold=4.0)
    live.refresh(now)
    assert _agrees_with_rows(engine, live, since=now - 3600)["lists_served"] == 2


def test_rows_stamped_before_the_overlap_are_not_read_again(catalog_db: Engine) -> None:
    """The cost of a refresh follows what was stored since: it reads back OVERLAP_S only."""
    engine = catalog_db
    now = time.time()
    _lists(engine, [f"old{n}" for n in range(50)], now - 2 * OVERLAP_S)
    live = LiveTally(engine, liked_threshold=4.0)
    live.refresh(now)
    assert sum(c.lists for c in live.tally.lists.values()) == 50
    with session_scope(engine) as s:
        s.execute(feedback.delete())  # nothing to read but lists
    live.refresh(now + 10)
    assert not live._lists_seen  # every list read was stamped before the overlap
    assert sum(c.lists for c in live.tally.lists.values()) == 50


def test_the_summary_reads_rows_for_what_the_tally_does_not_keep(
    catalog_db: Engine, db_url: str
) -> None:
    """A window longer than the live tally's day, or charted finer than its buckets are
    at that age, comes from the rows; both answers count the same lists."""
    engine = catalog_db
    now = time.time()
    _lists(engine, ["d1", "d2"], now - 5 * 3600)  # kept in hourly buckets by the tally
    _lists(engine, ["n1"], now - 60)
    settings = Settings(database_url=db_url)
    facts = ServingFacts({}, None, None)
    monitoring_summary._LIVE.clear()
    day = monitoring_summary.compute(settings, facts, 24.0, "auto")
    assert day["counts"]["impressions_window"] == 3 and day["bucket"] == "h"
    assert day["figures"]["lists_served"] == 3.0
    # Charted by the minute: the hourly buckets cannot, the rows can.
    by_minute = monitoring_summary.compute(settings, facts, 24.0, "min")
    assert by_minute["bucket"] == "min" and by_minute["counts"]["impressions_window"] == 3
    assert len(by_minute["timeseries"]) == 2  # two minutes with lists
    two_days = monitoring_summary.compute(settings, facts, 48.0, "auto")
    assert two_days["counts"]["impressions_window"] == 3
    # Stored since the whole-table counts were taken: the totals still add up.
    _lists(engine, ["n2", "n3"], time.time())
    _answers(engine, [FeedbackEvent("u1", "i1", "click", recommendation_id="n2")])
    later = monitoring_summary.compute(settings, facts, 24.0, "auto")["counts"]
    assert later["impressions_window"] == later["impressions_total"] == 5
    assert later["feedback_window"] == later["feedback_total"] == 1
    monitoring_summary._LIVE.clear()


def _pid() -> dict[str, int]:
    return {"pid": os.getpid()}


def test_summaries_and_off_policy_reports_run_in_processes_of_their_own() -> None:
    """A report of a week's lists takes a minute: sharing the summary's process, it held the
    summary (and the alerts of /metrics) for as long. The summary's process is kept between
    calls: its live tally lives there."""
    process = MonitoringProcess()
    try:
        summary = process._run("summary", _pid)["pid"]
        report = process._run("off-policy", _pid)["pid"]
        assert summary != report and os.getpid() not in (summary, report)
        assert process._run("summary", _pid)["pid"] == summary
    finally:
        process.close()
