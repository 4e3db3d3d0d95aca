"""Ingestion: whole file or nothing, line-numbered errors, idempotent, latest rating wins."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from recsys.config import RatingScale
from recsys.data.ingest import Columns, ingest_csv
from recsys.errors import ValidationFailedError
from recsys.store import queries
from recsys.store.db import session_scope
from recsys.store.events import FeedbackEvent, record_feedback
from recsys.store.tables import items, ratings, users


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _all_ratings(engine: Engine) -> list[tuple[str, str, float, int]]:
    with session_scope(engine) as s:
        rows = s.execute(
            select(users.c.external_id, items.c.external_id, ratings.c.value, ratings.c.rated_at)
            .join(users, users.c.id == ratings.c.user_id)
            .join(items, items.c.id == ratings.c.item_id)
            .order_by(users.c.external_id, items.c.external_id)
        )
        return [(u, i, float(v), int(t)) for u, i, v, t in rows]


GOOD = (
    "user_id,item_id,rating,timestamp\n"
    "u1,i1,4.5,1000\nu1,i2,3,2000\nu2,i1,1.0,2024-01-01T00:00:00Z\n"
)


def test_good_file_is_applied_and_reingest_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", GOOD)
    report = ingest_csv(engine, path)
    assert report.rows == 3 and report.new_ratings == 3
    first = _all_ratings(engine)
    assert first == [
        ("u1", "i1", 4.5, 1000),
        ("u1", "i2", 3.0, 2000),
        ("u2", "i1", 1.0, 1704067200),
    ]
    again = ingest_csv(engine, path)
    assert again.new_ratings == 0
    assert _all_ratings(engine) == first


def test_bad_rows_write_nothing_and_name_their_lines(engine: Engine, tmp_path: Path) -> None:
    ingest_csv(engine, _write(tmp_path / "ok.csv", GOOD))
    before = _all_ratings(engine)
    bad = _write(
        tmp_path / "bad.csv",
        "user_id,item_id,rating,timestamp\n"
        "u9,i9,4,100\n"  # line 2 fine, but must not be written either
        ",i1,3,100\n"  # line 3: empty user
        "u3,i1,abc,100\n"  # line 4: not a number
        "u3,i2,7,100\n"  # line 5: outside the scale
        "u3,i3,2,yesterday\n",  # line 6: bad timestamp
    )
    with pytest.raises(ValidationFailedError) as info:
        ingest_csv(engine, bad)
    lines = {e.line: e.message for e in info.value.errors}
    assert set(lines) == {3, 4, 5, 6}
    assert "user id is empty" in lines[3]
    assert "'abc' is not a number" in lines[4]
    assert "outside the scale 0.5..5" in lines[5]
    assert "timestamp 'yesterday'" in lines[6]
    assert "nothing was written" in str(info.value)
    assert _all_ratings(engine) == before


def test_timestamps_outside_the_epoch_to_now_are_refused(engine: Engine, tmp_path: Path) -> None:
    """The API's rule: from 1970 to a few minutes from now. A year-5138 rating broke the
    monitoring summary and could never be replaced by later feedback."""
    bad = _write(
        tmp_path / "ts.csv",
        "user_id,item_id,rating,timestamp\n"
        "u1,i1,4,0\n"  # line 2: the epoch itself is fine
        "u1,i2,4,1970-01-01T00:00:00Z\n"  # line 3: fine
        "u1,i3,4,1000000000000\n"  # line 4: year 33658
        "u1,i4,4,9e18\n"  # line 5: beyond int64 nanoseconds
        "u1,i5,4,1969-12-31T23:59:59Z\n"  # line 6
        "u1,i6,4,-5\n"  # line 7
        "u1,i7,4,1e30\n"  # line 8: beyond int64 seconds
        "u1,i8,4,soon\n",  # line 9
    )
    with pytest.raises(ValidationFailedError) as info:
        ingest_csv(engine, bad)
    lines = {e.line: e.message for e in info.value.errors}
    assert set(lines) == {4, 5, 6, 7, 8, 9}, lines
    for n in (4, 5, 8):
        assert "lies in the future" in lines[n]
    for n in (6, 7):
        assert "lies before 1970" in lines[n]
    assert "not Unix seconds" in lines[9]
    assert _all_ratings(engine) == []


def test_ids_with_nul_are_refused_on_every_database(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"user_id,item_id,rating\nu\x00,i,3\nu,i\x00x,4\n")
    with pytest.raises(ValidationFailedError) as info:
        ingest_csv(engine, path)
    assert [(e.line, e.message) for e in info.value.errors] == [
        (2, "user id contains a NUL character"),
        (3, "item id contains a NUL character"),
    ]


def test_error_in_a_later_chunk_rolls_back_earlier_chunks(engine: Engine, tmp_path: Path) -> None:
    rows = [f"u{n},i{n % 7},3,{n}" for n in range(50)] + ["u1,i1,9,1"]
    path = _write(tmp_path / "r.csv", "user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValidationFailedError) as info:
        ingest_csv(engine, path, chunk_rows=10)
    assert [e.line for e in info.value.errors] == [52]
    with session_scope(engine) as s:
        assert queries.counts(session=s) == {"users": 0, "items": 0, "ratings": 0}


def test_latest_rating_wins(engine: Engine, tmp_path: Path) -> None:
    ingest_csv(engine, _write(tmp_path / "a.csv", "user_id,item_id,rating,timestamp\nu,i,2,500\n"))
    ingest_csv(engine, _write(tmp_path / "b.csv", "user_id,item_id,rating,timestamp\nu,i,5,400\n"))
    assert _all_ratings(engine) == [("u", "i", 2.0, 500)]  # older rating ignored
    ingest_csv(
        engine,
        _write(tmp_path / "c.csv", "user_id,item_id,rating,timestamp\nu,i,4,600\nu,i,1,550\n"),
    )
    assert _all_ratings(engine) == [("u", "i", 4.0, 600)]  # newest in the file wins


def test_named_columns_items_file_and_missing_column(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "who,what,stars\n7,42,3.5\n")
    items_path = _write(tmp_path / "i.csv", "what,title,genres\n42,Dune (1984),Sci-Fi\n")
    cols = Columns(user="who", item="what", rating="stars")
    ingest_csv(engine, path, items_path=items_path, columns=cols)
    with session_scope(engine) as s:
        assert queries.item_details(session=s, external_ids=["42"]) == {
            "42": {"title": "Dune (1984)", "genres": "Sci-Fi"}
        }
    with pytest.raises(ValidationFailedError, match=r"missing required column\(s\) stars"):
        ingest_csv(engine, _write(tmp_path / "x.csv", "who,what\n1,2\n"), columns=cols)


def test_malformed_csv_and_empty_file(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailedError, match="line 3"):
        ingest_csv(engine, _write(tmp_path / "m.csv", "user_id,item_id,rating\nu,i,3\nu,i,3,4,5\n"))
    with pytest.raises(ValidationFailedError, match="no data rows"):
        ingest_csv(engine, _write(tmp_path / "e.csv", "user_id,item_id,rating\n"))
    with pytest.raises(ValidationFailedError, match="header"):
        ingest_csv(engine, _write(tmp_path / "z.csv", ""))


_cell = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters='",\r\n'), max_size=6
)


@pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(_cell, _cell, _cell), min_size=1, max_size=8))
def test_validator_accepts_exactly_the_valid_rows(
    engine: Engine, tmp_path: Path, rows: list[tuple[str, str, str]]
) -> None:
    """Property: a file is applied iff every row is valid; otherwise nothing changes."""
    scale = RatingScale()
    path = tmp_path / "p.csv"
    path.write_text("user_id,item_id,rating\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))

    def valid(a: str, b: str, c: str) -> bool:
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", c.strip()):
            return False
        v = float(c.strip())
        return bool(a.strip()) and bool(b.strip()) and scale.min <= v <= scale.max

    with session_scope(engine) as s:
        before = queries.count_rows(session=s, table=ratings)
    if all(valid(*r) for r in rows):
        ingest_csv(engine, path)
    else:
        with pytest.raises(ValidationFailedError):
            ingest_csv(engine, path)
        with session_scope(engine) as s:
            assert queries.count_rows(session=s, table=ratings) == before


def test_title_search_takes_percent_and_underscore_literally(engine: Engine) -> None:
    with session_scope(engine) as s:
        queries.upsert_items(
            session=s,
            rows=[
                {"external_id": "1", "title": "100% Love", "genres": None},
                {"external_id": "2", "title": "A_B", "genres": None},
                {"external_id": "3", "title": "ABC", "genres": None},
            ],
        )
    with session_scope(engine) as s:
        assert [t for _, t in queries.search_items(session=s, text="%")] == ["100% Love"]
        assert [t for _, t in queries.search_items(session=s, text="a_b")] == ["A_B"]


def test_the_report_counts_only_what_the_file_added(engine: Engine, tmp_path: Path) -> None:
    """Feedback committed during an ingestion is in the table afterwards, not in the report
    (on PostgreSQL the two run side by side; on SQLite they take turns)."""
    ingest_csv(engine, _write(tmp_path / "seed.csv", GOOD))  # not a first load: the upsert path
    rows = "".join(f"n{u},i{i},4,1000\n" for u in range(200) for i in range(250))
    big = _write(tmp_path / "big.csv", "user_id,item_id,rating,timestamp\n" + rows)
    stop = threading.Event()

    def other_writer() -> None:
        n = 0
        while not stop.is_set():
            with session_scope(engine) as s:
                record_feedback(session=s, events=[FeedbackEvent(f"fb{n}", "i1", "rating", 3.0)])
            n += 1
            time.sleep(0.005)

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        report = ingest_csv(engine, big)
    finally:
        stop.set()
        writer.join()
    assert report.new_ratings == 50_000
    again = ingest_csv(engine, big)
    assert again.new_ratings == 0
