"""Bulk paths: binary COPY in and out of PostgreSQL, the compact snapshot, shards."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, inspect, select

from recsys.data.ingest import IngestReport, ingest_csv
from recsys.data.snapshot import dense_rows, read_snapshot
from recsys.store import migrate, pgcopy
from recsys.store.bulk import Shard
from recsys.store.db import make_engine, session_scope
from recsys.store.events import FeedbackEvent, record_feedback
from recsys.store.queries import upsert_items
from recsys.store.tables import ratings
from tests.test_migrations import schema_differences

FIELDS = [">i4", ">i4", ">f4", ">i8"]


def _stream(columns: list[np.ndarray], cuts: list[int]) -> list[bytes]:
    data = pgcopy.HEADER + pgcopy.encode(columns, FIELDS) + pgcopy.TRAILER
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_copy_format_round_trips_across_any_block_boundaries() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    cols: list[np.ndarray] = [
        rng.integers(0, 2**31 - 1, n),
        rng.integers(0, 2**31 - 1, n),
        rng.random(n).astype(np.float32) * 5,
        rng.integers(0, 2**40, n),
    ]
    size = len(pgcopy.HEADER) + n * pgcopy.row_dtype(FIELDS).itemsize + 2
    blocks = _stream(cols, [*(int(c) for c in rng.integers(1, size, 37)), 3, 18, size - 1])
    for batch in (50, 1000, 1 << 23):  # parsed in many batches, or all at the end
        rows = np.concatenate(list(pgcopy.decode(blocks, FIELDS, batch_bytes=batch)))
        for k, col in enumerate(cols):
            np.testing.assert_array_equal(rows[f"f{k}"], col)


def test_copy_format_refuses_nulls_and_truncation() -> None:
    data = pgcopy.encode([np.array([1]), np.array([2]), np.array([3.0]), np.array([4])], FIELDS)
    null = bytearray(data)
    null[2:6] = (-1).to_bytes(4, "big", signed=True)  # the first field's length: NULL
    with pytest.raises(pgcopy.FormatError, match="NULL"):
        list(pgcopy.decode([pgcopy.HEADER + bytes(null) + pgcopy.TRAILER], FIELDS))
    with pytest.raises(pgcopy.FormatError, match="stray"):
        list(pgcopy.decode([pgcopy.HEADER + data[:-3]], FIELDS))
    with pytest.raises(pgcopy.FormatError, match="signature"):
        list(pgcopy.decode([b"X" * 40], FIELDS))


def test_dense_rows_match_numpy_unique() -> None:
    ids = np.random.default_rng(1).integers(1, 500, 5000).astype(np.int32)
    keys, rows = dense_rows(ids)
    want_keys, want_rows = np.unique(ids, return_inverse=True)
    np.testing.assert_array_equal(keys, want_keys)
    np.testing.assert_array_equal(rows, want_rows)
    assert rows.dtype == np.int32
    with pytest.raises(ValueError, match="outside"):
        dense_rows(np.array([1, 7]), keys=np.array([1, 2]))


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    return path


def test_duplicates_in_different_chunks_keep_the_latest(engine: Engine, tmp_path: Path) -> None:
    # Chunks of two rows: each pair below lands in a different chunk from its duplicate.
    path = _csv(
        tmp_path / "r.csv",
        [
            "a,x,5,200",  # newer than its duplicate further down: wins
            "b,y,1,100",
            "c,z,2,100",
            "a,x,1,100",
            "b,y,4,100",  # same time as line 3's: the later line wins
            "c,z,3,50",
        ],
    )
    report = ingest_csv(engine, path, chunk_rows=2)
    assert report.new_ratings == 3
    with session_scope(engine) as s:
        data = read_snapshot(session=s)
    got = {
        (data.user_vocab.ids[u], data.item_vocab.ids[i]): float(r)
        for u, i, r in zip(data.users, data.items, data.ratings, strict=True)
    }
    assert got == {("a", "x"): 5.0, ("b", "y"): 4.0, ("c", "z"): 2.0}


def test_first_load_leaves_the_schema_as_the_models_say(engine: Engine, tmp_path: Path) -> None:
    # Into an empty table PostgreSQL loads without indexes and rebuilds them: they must all
    # be back, with the models' names and definitions (on SQLite this is a plain upsert).
    rows = [f"u{n % 13},i{n % 17},{1 + n % 5},{1000 + n}" for n in range(200)]
    ingest_csv(engine, _csv(tmp_path / "r.csv", rows), chunk_rows=50)
    assert schema_differences(engine) == []
    names = {ix["name"] for ix in inspect(engine).get_indexes("ratings")}
    assert {"ix_ratings_item_id", "ix_ratings_rated_at"} <= names
    # A second file goes through the upsert with everything in place.
    ingest_csv(engine, _csv(tmp_path / "s.csv", ["u1,i1,5,99999", "new,i1,3,5"]))
    assert schema_differences(engine) == []


def test_snapshot_shards_partition_the_ratings(engine: Engine, tmp_path: Path) -> None:
    rows = [f"u{n % 31},i{(n * 7) % 23},{1 + n % 5},{1000 + n}" for n in range(600)]
    ingest_csv(engine, _csv(tmp_path / "r.csv", rows))
    with session_scope(engine) as s:
        whole = read_snapshot(session=s)
        lean = read_snapshot(session=s, timestamps=False)
        shards = [read_snapshot(session=s, shard=Shard(r, 3)) for r in range(3)]

    def triples(d: object) -> set[tuple[str, str, float]]:
        from recsys.data.interactions import Interactions

        assert isinstance(d, Interactions)
        return {
            (d.user_vocab.ids[u], d.item_vocab.ids[i], float(r))
            for u, i, r in zip(d.users, d.items, d.ratings, strict=True)
        }

    assert lean.timestamps is None and whole.timestamps is not None
    assert lean.max_timestamp == whole.max_timestamp == int(whole.timestamps.max())
    assert triples(lean) == triples(whole)
    parts = [triples(d) for d in shards]
    assert set().union(*parts) == triples(whole)
    assert sum(len(p) for p in parts) == len(whole)
    assert all(120 < len(p) < 280 for p in parts), [len(p) for p in parts]
    # By user: each user's ratings are all in one part (the ranking head's input).
    owners = [{u for u, _, _ in p} for p in parts]
    assert sum(len(o) for o in owners) == len(set().union(*owners)) == 31
    with pytest.raises(ValueError, match="rank"):
        Shard(3, 3)


@pytest.mark.postgres
def test_concurrent_first_loads_take_turns(pg_url: str, tmp_path: Path) -> None:
    """Two ingestions into an empty table at once: each would load "an empty table" and
    rebuild its indexes, and they deadlocked. They now take turns; the newer ratings win."""
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url)
    older = _csv(tmp_path / "a.csv", [f"u{n},i{n % 50},3,{n}" for n in range(5000)])
    newer = _csv(tmp_path / "b.csv", [f"u{n},i{n % 50},4,{n + 1}" for n in range(5000)])
    outcomes: dict[str, object] = {}

    def load(path: Path) -> None:
        try:
            outcomes[path.name] = ingest_csv(engine, path)
        except Exception as exc:  # recorded, so the assertion below shows it
            outcomes[path.name] = exc

    threads = [threading.Thread(target=load, args=(p,)) for p in (older, newer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(o, IngestReport) for o in outcomes.values()), outcomes
    with session_scope(engine) as s:
        values = s.execute(select(ratings.c.value)).scalars().all()
    assert len(values) == 5000 and set(values) == {4.0}
    assert schema_differences(engine) == []
    engine.dispose()


@pytest.mark.postgres
def test_a_first_load_and_feedback_at_once_both_succeed(pg_url: str, tmp_path: Path) -> None:
    """Feedback for users a first load is creating used to deadlock with the load's index and
    foreign-key rebuild, and PostgreSQL cancelled the load. Now feedback waits for it."""
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url)
    with session_scope(engine) as s:
        upsert_items(session=s, rows=[{"external_id": f"i{n}"} for n in range(50)])
    n_rows = 100_000
    path = _csv(tmp_path / "r.csv", [f"u{n},i{n % 50},3,{n}" for n in range(n_rows)])
    loaded: list[object] = []
    feedback_errors: list[Exception] = []
    done = threading.Event()

    def load() -> None:
        try:
            loaded.append(ingest_csv(engine, path))
        except Exception as exc:
            loaded.append(exc)
        done.set()

    def send_feedback() -> None:
        n = 0
        while not done.is_set():
            n += 1
            event = FeedbackEvent(f"u{n * 7919 % n_rows}", "i1", "click", event_id=f"e{n}")
            try:
                with session_scope(engine) as s:
                    record_feedback(session=s, events=[event])
            except Exception as exc:
                feedback_errors.append(exc)

    loader = threading.Thread(target=load)
    sender = threading.Thread(target=send_feedback)
    loader.start()
    sender.start()
    loader.join()
    sender.join()
    assert isinstance(loaded[0], IngestReport), loaded
    assert loaded[0].ratings_after == n_rows
    assert feedback_errors == []
    engine.dispose()
