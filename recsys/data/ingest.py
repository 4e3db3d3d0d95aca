"""Ingestion: validate every row, then apply the whole input in one transaction or nothing.

Input streams in chunks (pandas' C parser), validation is vectorised per chunk, and errors
carry the file's line numbers. Rows are written as they are validated inside one transaction;
the first bad row stops the writing, validation goes on to report more, and the transaction
is rolled back, so a bad file leaves the database exactly as it was.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from recsys.config import RatingScale
from recsys.errors import RowError, ValidationFailedError
from recsys.store import queries
from recsys.store.bulk import RatingWriter
from recsys.store.db import session_scope
from recsys.store.tables import EXTERNAL_ID_LENGTH, items, ratings, users


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
    items_upserted: int
    seconds: float

    @property
    def new_ratings(self) -> int:
        return self.ratings_after - self.ratings_before


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


def _check_ids(values: pd.Series, lines: np.ndarray, what: str, errors: _Errors) -> np.ndarray:
    ids = values.str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        errors.add(lines[empty], f"{what} is empty")
    too_long = (ids.str.len() > EXTERNAL_ID_LENGTH).to_numpy()
    if too_long.any():
        errors.add(lines[too_long], f"{what} is longer than {EXTERNAL_ID_LENGTH} characters")
    return ~(empty | too_long)


def _numbers(text: pd.Series) -> pd.Series:
    """Text as float64, NaN where it is not a number."""
    try:
        # All valid, the usual case: a straight cast, several times faster than to_numeric.
        return text.astype("float64")
    except (ValueError, TypeError):
        return pd.to_numeric(text, errors="coerce")


def parse_timestamps(values: pd.Series) -> np.ndarray:
    """Unix seconds from integers or ISO 8601 text; -1 where a value cannot be parsed."""
    text = values.str.strip()
    numeric = _numbers(text)
    out = np.full(len(text), -1, dtype=np.int64)
    is_num = numeric.notna().to_numpy() & np.isfinite(
        numeric.to_numpy(dtype=float, na_value=np.nan)
    )
    out[is_num] = numeric[is_num].to_numpy(dtype=np.float64).astype(np.int64)
    rest = ~is_num & (text != "").to_numpy()
    if rest.any():
        parsed = pd.to_datetime(text[rest], errors="coerce", utc=True, format="ISO8601")
        ok = parsed.notna().to_numpy()
        seconds = (parsed[ok] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        idx = np.flatnonzero(rest)
        out[idx[ok]] = seconds.to_numpy(dtype=np.int64)
    return out


def _validate_ratings(
    chunk: pd.DataFrame, cols: Columns, scale: RatingScale, now: int, errors: _Errors
) -> pd.DataFrame:
    """The valid rows of a chunk, as user, item, value, rated_at; bad rows go to `errors`."""
    lines = chunk.index.to_numpy() + 2  # line 1 is the header
    ok = _check_ids(chunk[cols.user], lines, "user id", errors)
    ok &= _check_ids(chunk[cols.item], lines, "item id", errors)

    raw = chunk[cols.rating].str.strip()
    value = _numbers(raw).to_numpy(dtype=float, na_value=np.nan)
    not_number = ~np.isfinite(value)
    if not_number.any():
        errors.add(lines[not_number], [f"rating {v!r} is not a number" for v in raw[not_number]])
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

    if cols.timestamp in chunk:
        rated_at = parse_timestamps(chunk[cols.timestamp])
        bad_ts = rated_at < 0
        if bad_ts.any():
            raw_ts = chunk[cols.timestamp][bad_ts]
            errors.add(
                lines[bad_ts],
                [f"timestamp {v!r} is not Unix seconds or an ISO 8601 date" for v in raw_ts],
            )
        ok &= ~bad_ts
    else:
        rated_at = np.full(len(chunk), now, dtype=np.int64)

    return pd.DataFrame(
        {
            "user": chunk[cols.user].str.strip()[ok].to_numpy(),
            "item": chunk[cols.item].str.strip()[ok].to_numpy(),
            "value": value[ok],
            "rated_at": rated_at[ok],
        }
    )


class _IdCache:
    """External id -> database id for one ingestion, so each id is looked up once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.known = {users.name: dict[str, int](), items.name: dict[str, int]()}

    def resolve(self, table: str, ids: np.ndarray) -> np.ndarray:
        # Python touches each distinct id of the chunk once; rows are mapped by their codes.
        codes, distinct = pd.factorize(ids)
        cache = self.known[table]
        new = [x for x in distinct if x not in cache]
        if new:
            tbl = users if table == users.name else items
            cache.update(queries.ensure_ids(session=self.session, table=tbl, external_ids=new))
        db_ids = np.fromiter((cache[x] for x in distinct), dtype=np.int64, count=len(distinct))
        return db_ids[codes]


def _write_ratings(valid: pd.DataFrame, ids: _IdCache, writer: RatingWriter) -> None:
    # Rows go in file order; the writer keeps the newest rating of a (user, item), the last
    # in the file on ties, within and across chunks.
    writer.write(
        ids.resolve(users.name, valid["user"].to_numpy()),
        ids.resolve(items.name, valid["item"].to_numpy()),
        valid["value"].to_numpy(dtype=np.float64),
        valid["rated_at"].to_numpy(dtype=np.int64),
    )


def _missing_columns(found: Iterable[str], required: Iterable[str]) -> list[str]:
    have = set(found)
    return [c for c in required if c not in have]


def read_csv_chunks(path: Path, chunk_rows: int, required: list[str]) -> Iterator[pd.DataFrame]:
    """CSV rows as text, chunk by chunk, after checking that the required columns exist."""
    try:
        header = pd.read_csv(path, nrows=0, dtype=str)
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValidationFailedError(
            str(path), [RowError(1, f"cannot read a CSV header: {exc}")], 1
        ) from exc
    missing = _missing_columns(header.columns, required)
    if missing:
        found = ", ".join(map(str, header.columns)) or "none"
        raise ValidationFailedError(
            str(path),
            [RowError(1, f"missing required column(s) {', '.join(missing)} (found: {found})")],
            1,
        )
    reader = pd.read_csv(
        path, dtype=str, keep_default_na=False, chunksize=chunk_rows, skipinitialspace=True
    )
    try:
        yield from reader
    except pd.errors.ParserError as exc:
        # pandas names the line itself ("Expected 4 fields in line 7, saw 5").
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else 0
        raise ValidationFailedError(str(path), [RowError(line, str(exc).strip())], 1) from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailedError(str(path), [RowError(0, f"not UTF-8 text: {exc}")], 1) from exc


def _item_rows(chunk: pd.DataFrame, item_col: str, errors: _Errors) -> list[dict[str, object]]:
    lines = chunk.index.to_numpy() + 2
    ok = _check_ids(chunk[item_col], lines, "item id", errors)
    out: list[dict[str, object]] = []
    for _, row in chunk[ok].iterrows():
        rec: dict[str, object] = {"external_id": row[item_col].strip()}
        for col in ("title", "genres"):
            if col in chunk:
                rec[col] = row[col] or None
        out.append(rec)
    return out


def ingest_frames(
    engine: Engine,
    rating_chunks: Iterable[pd.DataFrame],
    *,
    source: str,
    columns: Columns = Columns(),
    scale: RatingScale = RatingScale(),
    item_chunks: Iterable[pd.DataFrame] = (),
    item_col: str = "item_id",
    max_errors: int = 20,
) -> IngestReport:
    """Validate and apply ratings (and optionally catalog items) as one transaction.

    Chunks hold text columns with a default RangeIndex continuing across chunks, as
    `pd.read_csv(..., dtype=str, chunksize=n)` yields them; line numbers derive from it.
    """
    started = time.perf_counter()
    errors = _Errors(max_errors)
    item_errors = _Errors(max_errors)
    now = int(time.time())
    rows = items_upserted = 0
    with session_scope(engine) as session:
        before = queries.count_rows(session=session, table=ratings)
        ids = _IdCache(session)
        writer = RatingWriter(session)
        for chunk in item_chunks:
            recs = _item_rows(chunk, item_col, item_errors)
            if not item_errors.total:
                queries.upsert_items(session=session, rows=recs)
                items_upserted += len(recs)
        if item_errors.total:
            raise ValidationFailedError(
                f"{source} (items)", item_errors.sorted(), item_errors.total
            )
        for chunk in rating_chunks:
            rows += len(chunk)
            valid = _validate_ratings(chunk, columns, scale, now, errors)
            if not errors.total:
                _write_ratings(valid, ids, writer)
        if errors.total:
            # Raising inside session_scope rolls the whole transaction back.
            raise ValidationFailedError(source, errors.sorted(), errors.total)
        if rows == 0:
            raise ValidationFailedError(source, [RowError(2, "the file has no data rows")], 1)
        writer.finish(table_was_empty=before == 0)
        after = queries.count_rows(session=session, table=ratings)
    return IngestReport(rows, before, after, items_upserted, time.perf_counter() - started)


def ingest_csv(
    engine: Engine,
    path: Path,
    *,
    items_path: Path | None = None,
    columns: Columns = Columns(),
    scale: RatingScale = RatingScale(),
    chunk_rows: int = 50_000,
    max_errors: int = 20,
) -> IngestReport:
    """`recsys ingest`: a ratings CSV, and optionally an items CSV (item id, title, genres)."""
    rating_chunks = read_csv_chunks(path, chunk_rows, [columns.user, columns.item, columns.rating])
    item_chunks: Iterable[pd.DataFrame] = ()
    if items_path is not None:
        item_chunks = read_csv_chunks(items_path, chunk_rows, [columns.item])
    return ingest_frames(
        engine,
        rating_chunks,
        source=str(path),
        columns=columns,
        scale=scale,
        item_chunks=item_chunks,
        item_col=columns.item,
        max_errors=max_errors,
    )
