"""Ingestion: validate every row, then apply the whole input in one transaction or nothing.

Input streams in chunks of Arrow text (`csv_input`); validation is vectorised per chunk and
runs a chunk ahead of the writing, in a thread; errors carry the file's line numbers. Rows
are written as they are validated inside one transaction; the first bad row stops the
writing, validation goes on to report more, and the transaction is rolled back, so a bad
file leaves the database exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from recsys.config import RatingScale
from recsys.data import timestamps
from recsys.data.csv_input import Chunk, read_csv
from recsys.errors import RowError, ValidationFailedError
from recsys.locks import wait_for_turn
from recsys.prefetch import prefetch
from recsys.store import queries
from recsys.store.bulk import RatingWriter
from recsys.store.db import session_scope
from recsys.store.tables import EXTERNAL_ID_LENGTH, ID_SLASH, items, ratings, users


@dataclass(frozen=True)
class Columns:
    """Names of the input columns; the timestamp column is optional in the file."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str = "rating"
    timestamp: str = "timestamp"


@dataclass(frozen=True)
class IngestReport:
    rows: int
    ratings_before: int
    ratings_after: int
    """The table's size after: on PostgreSQL it also holds what others wrote meanwhile."""
    items_upserted: int
    seconds: float
    new_ratings: int
    """(user, item) pairs this file added: counted by the statement that wrote them."""


class _Errors:
    """Collects the first `limit` bad rows and counts all of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.shown: list[RowError] = []
        self.total = 0

    def add(self, lines: np.ndarray, message: str | list[str]) -> None:
        self.total += len(lines)
        room = self.limit - len(self.shown)
        messages = [message] * len(lines) if isinstance(message, str) else message
        for line, msg in zip(lines[:room], messages[:room], strict=False):
            self.shown.append(RowError(int(line), msg))

    def sorted(self) -> list[RowError]:
        return sorted(self.shown, key=lambda e: e.line)[: self.limit]


_EMPTY = pa.scalar("")
_MAX_ID_LENGTH = pa.scalar(EXTERNAL_ID_LENGTH, pa.int32())


def _check_ids(ids: pa.StringArray, lines: np.ndarray, what: str, errors: _Errors) -> np.ndarray:
    empty = _mask(pc.equal(ids, _EMPTY))
    if empty.any():
        errors.add(lines[empty], f"{what} is empty")
    too_long = _mask(pc.greater(pc.utf8_length(ids), _MAX_ID_LENGTH))
    if too_long.any():
        errors.add(lines[too_long], f"{what} is longer than {EXTERNAL_ID_LENGTH} characters")
    # PostgreSQL text cannot hold NUL, and the API refuses it in ids: refused here too, so a
    # file is judged the same on either database.
    nul = _mask(pc.match_substring(ids, "\x00"))
    if nul.any():
        errors.add(lines[nul], f"{what} contains a NUL character")
    slash = _mask(pc.match_substring(ids, "/"))
    if slash.any():
        errors.add(lines[slash], f"{what} {ID_SLASH}")
    return np.asarray(~(empty | too_long | nul | slash))


def _mask(values: pa.BooleanArray) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _texts_at(text: pa.StringArray, mask: np.ndarray) -> list[Any]:
    """The cells where `mask` holds, as Python strings (for messages about bad rows)."""
    return text.filter(pa.array(mask)).to_pylist()


def _numbers(text: pa.StringArray) -> np.ndarray:
    """Text as float64, NaN where it is not a number."""
    try:
        # All valid, the usual case: Arrow's cast, a hundred times faster than pandas'.
        return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    except pa.ArrowInvalid:
        # Python's own reading of numbers, so a bad file is judged as a good one would be.
        parsed = pd.to_numeric(pd.Series(text.to_pylist(), dtype=object), errors="coerce")
        return parsed.to_numpy(dtype=np.float64, na_value=np.nan)


UNPARSED = np.iinfo(np.int64).min


def parse_timestamps(text: pa.StringArray) -> np.ndarray:
    """Unix seconds from numbers or ISO 8601 text; UNPARSED where a value cannot be read."""
    numeric = _numbers(text)
    is_num = np.isfinite(numeric)
    out = np.full(len(text), UNPARSED, dtype=np.int64)
    # Clipped so that 9e18 seconds is "in the future", not an overflow of the cast.
    out[is_num] = np.clip(numeric[is_num], -(2.0**62), 2.0**62).astype(np.int64)
    rest = ~is_num & ~_mask(pc.equal(text, _EMPTY))
    if rest.any():
        out[rest] = _iso_seconds(_texts_at(text, rest))
    return out


def _iso_seconds(texts: list[str]) -> np.ndarray:
    """Unix seconds of ISO 8601 dates (UNPARSED where unreadable). pandas reads them fast;
    where it cannot hold a date (releases that keep nanoseconds only: 1677-2262) it raises
    rather than coerces, and then each is read by Python's datetime (years 1-9999), so a
    date such as 1600-01-01 or 9999-12-31 is reported as out of range, not a crash."""
    try:
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), errors="coerce", utc=True,
                                format="ISO8601")  # fmt: skip
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        return np.array([_one_iso_seconds(t) for t in texts], dtype=np.int64)
    ok = parsed.notna().to_numpy()
    seconds = np.full(len(texts), UNPARSED, dtype=np.int64)
    # numpy's datetime64 in seconds, whatever unit pandas chose for the dates it read (a
    # subtraction in nanoseconds overflowed on 9999-12-31).
    utc = parsed[ok].dt.tz_convert(None).to_numpy()
    seconds[ok] = utc.astype("datetime64[s]").astype(np.int64)
    return seconds


def _one_iso_seconds(text: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return int(UNPARSED)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # as pandas reads a date without an offset
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)


@dataclass(frozen=True)
class _Valid:
    """The valid rows of a chunk: external ids as Arrow text, values and Unix seconds."""

    users: pa.StringArray
    items: pa.StringArray
    values: np.ndarray  # float64
    rated_at: np.ndarray  # int64


def _validate_ratings(
    chunk: Chunk, cols: Columns, scale: RatingScale, now: int, errors: _Errors
) -> _Valid:
    """The valid rows of a chunk; bad rows go to `errors`."""
    lines = chunk.lines()
    user, item = chunk.text(cols.user), chunk.text(cols.item)
    ok = _check_ids(user, lines, "user id", errors)
    ok &= _check_ids(item, lines, "item id", errors)

    raw = chunk.text(cols.rating)
    value = _numbers(raw)
    not_number = ~np.isfinite(value)
    if not_number.any():
        bad = _texts_at(raw, not_number)
        errors.add(lines[not_number], [f"rating {v!r} is not a number" for v in bad])
    outside = ~not_number & ((value < scale.min) | (value > scale.max))
    if outside.any():
        errors.add(
            lines[outside],
            [
                f"rating {v:g} is outside the scale {scale.min:g}..{scale.max:g}"
                for v in value[outside]
            ],
        )
    ok &= ~(not_number | outside)

    if chunk.has(cols.timestamp):
        latest = now + timestamps.CLOCK_SLACK_S
        raw_ts = chunk.text(cols.timestamp)
        rated_at = parse_timestamps(raw_ts)
        unread = rated_at == UNPARSED
        if unread.any():
            errors.add(
                lines[unread],
                [
                    f"timestamp {v!r} is not Unix seconds or an ISO 8601 date"
                    for v in _texts_at(raw_ts, unread)
                ],
            )
        out_of_range = ~unread & ((rated_at < timestamps.EARLIEST_S) | (rated_at > latest))
        if out_of_range.any():
            errors.add(
                lines[out_of_range],
                [
                    f"timestamp {v!r} {timestamps.problem(float(s))}"
                    for v, s in zip(
                        _texts_at(raw_ts, out_of_range), rated_at[out_of_range], strict=True
                    )
                ],
            )
        ok &= ~(unread | out_of_range)
    else:
        rated_at = np.full(len(chunk), now, dtype=np.int64)

    keep = pa.array(ok)
    return _Valid(user.filter(keep), item.filter(keep), value[ok], rated_at[ok])


class _IdCache:
    """External id -> database id for one ingestion, so each id is looked up once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.known = {users.name: dict[str, int](), items.name: dict[str, int]()}

    def resolve(self, table: str, ids: pa.StringArray) -> np.ndarray:
        # Python touches each distinct id of the chunk once; rows are mapped by their codes.
        encoded = cast("pa.DictionaryArray[Any, Any]", pc.dictionary_encode(ids))
        distinct = [str(x) for x in encoded.dictionary.to_pylist()]
        cache = self.known[table]
        new = [x for x in distinct if x not in cache]
        if new:
            tbl = users if table == users.name else items
            cache.update(queries.ensure_ids(session=self.session, table=tbl, external_ids=new))
        db_ids = np.fromiter((cache[x] for x in distinct), dtype=np.int64, count=len(distinct))
        return np.asarray(db_ids[encoded.indices.to_numpy()])


def _write_ratings(valid: _Valid, ids: _IdCache, writer: RatingWriter) -> None:
    # Rows go in file order; the writer keeps the newest rating of a (user, item), the last
    # in the file on ties, within and across chunks.
    writer.write(
        ids.resolve(users.name, valid.users),
        ids.resolve(items.name, valid.items),
        valid.values,
        valid.rated_at,
    )


def _item_rows(chunk: Chunk, item_col: str, errors: _Errors) -> list[dict[str, object]]:
    ids = chunk.text(item_col)
    ok = _check_ids(ids, chunk.lines(), "item id", errors)
    keep = pa.array(ok)
    columns = {"external_id": ids.filter(keep).to_pylist()}
    for col in ("title", "genres"):
        if chunk.has(col):
            columns[col] = [v or None for v in chunk.text(col).filter(keep).to_pylist()]
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def ingest_chunks(
    engine: Engine,
    rating_chunks: Iterable[Chunk],
    *,
    source: str,
    columns: Columns = Columns(),
    scale: RatingScale = RatingScale(),
    item_chunks: Iterable[Chunk] = (),
    item_col: str = "item_id",
    max_errors: int = 20,
) -> IngestReport:
    """Validate and apply ratings (and optionally catalog items) as one transaction."""
    started = time.perf_counter()
    errors = _Errors(max_errors)
    item_errors = _Errors(max_errors)
    now = int(time.time())
    rows = items_upserted = 0
    with session_scope(engine) as session:
        wait_for_turn(session, "ingest")  # one ingestion at a time
        before = queries.count_rows(session=session, table=ratings)
        ids = _IdCache(session)
        writer = RatingWriter(session, first_load=before == 0)
        for chunk in item_chunks:
            recs = _item_rows(chunk, item_col, item_errors)
            if not item_errors.total:
                queries.upsert_items(session=session, rows=recs)
                items_upserted += len(recs)
        if item_errors.total:
            raise ValidationFailedError(
                f"{source} (items)", item_errors.sorted(), item_errors.total
            )
        # Reading and validating run a chunk ahead in a thread, while this one resolves ids
        # and waits for the database to take in the chunk before.
        validated = prefetch(
            (len(chunk), _validate_ratings(chunk, columns, scale, now, errors))
            for chunk in rating_chunks
        )
        for count, valid in validated:
            rows += count
            if not errors.total:
                _write_ratings(valid, ids, writer)
        if errors.total:
            # Raising inside session_scope rolls the whole transaction back.
            raise ValidationFailedError(source, errors.sorted(), errors.total)
        if rows == 0:
            raise ValidationFailedError(source, [RowError(2, "the file has no data rows")], 1)
        inserted = writer.finish()
        after = queries.count_rows(session=session, table=ratings)
    # SQLite: the transaction held the only write lock throughout, so the counts are ours.
    new = inserted if inserted is not None else after - before
    return IngestReport(rows, before, after, items_upserted, time.perf_counter() - started, new)


def ingest_frames(
    engine: Engine,
    rating_frames: Iterable[pd.DataFrame],
    *,
    source: str,
    columns: Columns = Columns(),
    scale: RatingScale = RatingScale(),
    item_frames: Iterable[pd.DataFrame] = (),
    max_errors: int = 20,
) -> IngestReport:
    """`ingest_chunks` for data frames of text, each with a default RangeIndex continuing
    across frames, as `pd.read_csv(..., chunksize=n)` yields them: it gives the line numbers."""
    return ingest_chunks(
        engine,
        map(Chunk.from_frame, rating_frames),
        source=source,
        columns=columns,
        scale=scale,
        item_chunks=map(Chunk.from_frame, item_frames),
        item_col=columns.item,
        max_errors=max_errors,
    )


def ingest_csv(
    engine: Engine,
    path: Path,
    *,
    items_path: Path | None = None,
    columns: Columns = Columns(),
    scale: RatingScale = RatingScale(),
    chunk_rows: int = 200_000,
    max_errors: int = 20,
) -> IngestReport:
    """`recsys ingest`: a ratings CSV, and optionally an items CSV (item id, title, genres)."""
    rating_chunks = read_csv(path, chunk_rows, [columns.user, columns.item, columns.rating])
    item_chunks: Iterable[Chunk] = ()
    if items_path is not None:
        item_chunks = read_csv(items_path, chunk_rows, [columns.item])
    return ingest_chunks(
        engine,
        rating_chunks,
        source=str(path),
        columns=columns,
        scale=scale,
        item_chunks=item_chunks,
        item_col=columns.item,
        max_errors=max_errors,
    )
