"""PostgreSQL's binary COPY format, read and written with numpy, whole blocks at a time.

In the binary format a row of fixed-width, non-null columns is always the same number of
bytes (a 16-bit field count, then a 32-bit length and the big-endian value per field), so a
block of rows is a numpy structured array: millions of rows a second with no Python object
per row, which COPY through psycopg's row API (or an ORM) cannot approach.
Format: https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # no flags, no extension
TRAILER = b"\xff\xff"


def row_dtype(fields: Sequence[str]) -> np.dtype:
    """The structured dtype of one row whose fields have the given big-endian numpy types
    (">i4" for integer, ">i8" for bigint, ">f4" for real, ">f8" for double precision)."""
    parts: list[tuple[str, str]] = [("n", ">i2")]
    for k, code in enumerate(fields):
        parts += [(f"len{k}", ">i4"), (f"f{k}", code)]
    return np.dtype(parts)


def encode(columns: Sequence[np.ndarray], fields: Sequence[str]) -> bytes:
    """Rows (without header or trailer) holding `columns`, converted to `fields`' types."""
    dtype = row_dtype(fields)
    rows = np.empty(len(columns[0]), dtype=dtype)
    rows["n"] = len(fields)
    for k, (column, code) in enumerate(zip(columns, fields, strict=True)):
        rows[f"len{k}"] = np.dtype(code).itemsize
        rows[f"f{k}"] = column
    return rows.tobytes()


class FormatError(ValueError):
    """The stream is not binary COPY of the expected fixed-width, non-null columns."""


def decode(
    blocks: Iterable[bytes | bytearray | memoryview],
    fields: Sequence[str],
    batch_bytes: int = 1 << 23,
) -> Iterator[np.ndarray]:
    """Structured arrays of the rows in a COPY ... TO STDOUT (FORMAT BINARY) stream.

    Blocks may split rows anywhere. PostgreSQL sends a message per row, so blocks are
    gathered up to `batch_bytes` before they are parsed: one array per batch, not per row.
    Every row is checked for the expected field count and lengths, so a NULL or a column of
    another type fails loudly instead of shifting data.
    """
    dtype = row_dtype(fields)
    expected = [np.dtype(code).itemsize for code in fields]
    pending: list[bytes] = []
    size = 0
    rest = b""
    header_done = False

    def parse(data: bytes) -> tuple[np.ndarray, bytes]:
        nonlocal header_done
        if not header_done:
            if data[: len(SIGNATURE)] != SIGNATURE:
                raise FormatError("not a binary COPY stream (bad signature)")
            extension = int.from_bytes(data[15:19], "big")
            data = data[len(HEADER) + extension :]
            header_done = True
        whole = len(data) // dtype.itemsize * dtype.itemsize
        rows = np.frombuffer(data, dtype=dtype, count=whole // dtype.itemsize)
        _check(rows, expected)
        return rows, data[whole:]

    for block in blocks:
        pending.append(bytes(block))
        size += len(block)
        if size >= batch_bytes:
            rows, rest = parse(rest + b"".join(pending))
            pending, size = [], 0
            if len(rows):
                yield rows
    data = rest + b"".join(pending)
    if not header_done and len(data) < len(HEADER):
        raise FormatError("not a binary COPY stream (bad signature)")
    rows, rest = parse(data)
    if len(rows):
        yield rows
    if rest != TRAILER:
        raise FormatError(f"binary COPY stream ended with {len(rest)} stray bytes")


def _check(rows: np.ndarray, lengths: list[int]) -> None:
    # The trailer (-1 as the field count) can only be the last two bytes: the caller sees it
    # in what remains, never here, because it is shorter than a row.
    if (rows["n"] != len(lengths)).any():
        raise FormatError(f"rows do not all have {len(lengths)} fields")
    for k, length in enumerate(lengths):
        if (rows[f"len{k}"] != length).any():
            raise FormatError(f"field {k} is NULL or not {length} bytes wide in some rows")
