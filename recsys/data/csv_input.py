"""CSV files in, as Arrow text columns a chunk at a time, with the file's line numbers.

pyarrow's streaming reader parses about 16 million short rows a second on one core (pandas'
C parser, a tenth of that, was most of an ingestion's client time), and its text
columns go to validation and id lookup without a Python object per row. Every column is read
as text: validation decides what is a number, so that a bad cell is reported with its line
instead of failing the whole file's type inference.

Line numbers count the header as line 1 and each row as one line, as the parser counts them:
they are the file's lines unless the file has blank lines or a quoted value spans lines.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from recsys.errors import RowError, ValidationFailedError

# The streaming reader's unit of work; chunks of `chunk_rows` are cut from these blocks.
_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class Chunk:
    """Rows of text columns and the file line of the first of them."""

    table: pa.Table
    first_line: int

    def __len__(self) -> int:
        return self.table.num_rows

    def lines(self) -> np.ndarray:
        return np.arange(self.first_line, self.first_line + self.table.num_rows)

    def text(self, column: str) -> pa.StringArray:
        """A column with surrounding white space stripped (and nulls, from a data frame's
        missing values, as empty text)."""
        values = pc.fill_null(self.table.column(column).combine_chunks(), pa.scalar(""))
        return cast(pa.StringArray, pc.utf8_trim_whitespace(values))

    def has(self, column: str) -> bool:
        return column in self.table.column_names

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Chunk:
        """A data frame of one chunk; its default RangeIndex continues across chunks, as
        `pd.read_csv(..., chunksize=n)` numbers them, and gives the line numbers."""
        first = int(frame.index[0]) + 2 if len(frame) else 2
        text = frame.reset_index(drop=True).astype("str")
        return cls(pa.Table.from_pandas(text, preserve_index=False), first)


MAX_COLUMNS = 256
"""Most columns a ratings or items file may have (it needs three to five)."""


def _fail(path: Path, line: int, message: str) -> ValidationFailedError:
    return ValidationFailedError(str(path), [RowError(line, message)], 1)


def _unreadable(path: Path, exc: pa.ArrowInvalid, line: int) -> ValidationFailedError:
    # Arrow numbers rows as we do ("Row #7"); the reader may be a block ahead of the chunks.
    found = re.search(r"Row #(\d+)", str(exc))
    if "UTF8" in str(exc):
        return _fail(path, int(found.group(1)) if found else line, "the text is not UTF-8")
    return _fail(path, int(found.group(1)) if found else line, f"cannot read the CSV: {exc}")


def _header(path: Path) -> list[str]:
    try:
        with path.open("rb") as fh:
            first = fh.readline(1 << 20)
    except OSError as exc:
        raise _fail(path, 1, f"cannot read the file: {exc.strerror}") from exc
    if not first.strip():
        raise _fail(path, 1, "cannot read a CSV header: the file is empty")
    if len(first) == 1 << 20 and not first.endswith(b"\n"):
        raise _fail(path, 1, "the header line is longer than 1 MB: is this a CSV file?")
    try:
        table = pa_csv.read_csv(
            io.BytesIO(first), read_options=pa_csv.ReadOptions(autogenerate_column_names=True)
        )
    except pa.ArrowInvalid as exc:
        raise _fail(path, 1, f"cannot read a CSV header: {exc}") from exc
    return [str(v).strip() for v in table.to_pylist()[0].values()]


def _checked_header(path: Path, required: list[str]) -> list[str]:
    """The header's column names, once each, the required ones among them."""
    names = _header(path)
    if len(names) > MAX_COLUMNS:
        # Parsing cost grows with the columns, while the ingestion holds its lock: 40,000
        # columns in one row took a minute.
        raise _fail(
            path, 1, f"the header has {len(names):,} columns, more than {MAX_COLUMNS:,}: is "
            "this the ratings or items file?"
        )  # fmt: skip
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail(path, 1, f"column(s) {', '.join(twice)} appear more than once in the header")
    missing = [c for c in required if c not in names]
    if missing:
        found = ", ".join(names) or "none"
        raise _fail(path, 1, f"missing required column(s) {', '.join(missing)} (found: {found})")
    return names


def read_csv(path: Path, chunk_rows: int, required: list[str]) -> Iterator[Chunk]:
    """The file's rows in chunks of `chunk_rows`, after checking that the required columns
    exist. A row with the wrong number of fields ends the reading: it is raised with its
    line, together with any others in the same block of the file (4 MB)."""
    names = _checked_header(path, required)
    malformed: list[RowError] = []

    def reject(row: pa_csv.InvalidRow) -> Literal["skip"]:
        # Single-threaded parsing numbers rows as the chunks do: the header is 1, blank lines
        # are not counted.
        line = row.number if row.number is not None else 0
        malformed.append(
            RowError(line, f"expected {row.expected_columns} fields, saw {row.actual_columns}")
        )
        return "skip"

    line = 2
    try:
        reader = pa_csv.open_csv(
            path,
            # The header is ours, stripped as `names` holds it; single-threaded parsing is what
            # numbers rejected rows, and one core is all the client gets beside the database.
            read_options=pa_csv.ReadOptions(
                use_threads=False, block_size=_BLOCK_BYTES, skip_rows=1, column_names=names
            ),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=reject),
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
        pending: list[pa.RecordBatch] = []
        size = 0
        for batch in reader:
            if malformed:
                # Skipped rows shift the line numbers of the rows after them: stop here.
                break
            pending.append(batch)
            size += batch.num_rows
            while size >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield Chunk(table.slice(0, chunk_rows), line)
                line += chunk_rows
                rest = table.slice(chunk_rows)
                pending, size = rest.to_batches(), rest.num_rows
        if size and not malformed:
            yield Chunk(pa.Table.from_batches(pending), line)
    except pa.ArrowInvalid as exc:
        raise _unreadable(path, exc, line) from exc
    if malformed:
        raise ValidationFailedError(str(path), malformed[:20], len(malformed))
