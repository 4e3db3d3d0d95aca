"""The CSV reader: chunks and their line numbers, headers, rows the parser rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.data.csv_input import read_csv
from recsys.errors import ValidationFailedError


def _file(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_chunks_carry_their_first_line_and_stripped_text(tmp_path: Path) -> None:
    rows = "".join(f"u{n}, i{n} ,3\n" for n in range(25))
    chunks = list(read_csv(_file(tmp_path / "r.csv", "user_id,item_id,rating\n" + rows), 10, []))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [c.first_line for c in chunks] == [2, 12, 22]
    assert chunks[1].lines().tolist() == list(range(12, 22))
    assert chunks[2].text("item_id").to_pylist() == [f"i{n}" for n in range(20, 25)]


def test_header_names_are_stripped_and_a_bom_is_ignored(tmp_path: Path) -> None:
    path = _file(tmp_path / "b.csv", "user_id , item_id,rating\nu,i,4\n", encoding="utf-8-sig")
    (chunk,) = read_csv(path, 100, ["user_id", "item_id", "rating"])
    assert chunk.text("user_id").to_pylist() == ["u"]
    with pytest.raises(ValidationFailedError, match=r"missing required column\(s\) stars"):
        list(read_csv(path, 100, ["stars"]))


def test_rows_with_the_wrong_field_count_are_named_by_line(tmp_path: Path) -> None:
    text = "user_id,item_id,rating\nu,i,3\nu,i,3,4\nv,j,2\nw\n"
    with pytest.raises(ValidationFailedError) as info:
        list(read_csv(_file(tmp_path / "m.csv", text), 100, []))
    assert [(e.line, e.message) for e in info.value.errors] == [
        (3, "expected 3 fields, saw 4"),
        (5, "expected 3 fields, saw 1"),
    ]


def test_text_that_is_not_utf8_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"user_id,item_id,rating\nJos\xe9,i,3\n")
    with pytest.raises(ValidationFailedError, match="line 2: the text is not UTF-8"):
        list(read_csv(path, 100, []))


def test_empty_file_has_no_header(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailedError, match="header"):
        list(read_csv(_file(tmp_path / "e.csv", "\n"), 100, []))


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path / "d.csv", "user_id,item_id,rating,rating\nu,i,3,4\n")
    with pytest.raises(ValidationFailedError, match=r"line 1: column\(s\) rating appear more than"):
        list(read_csv(path, 100, ["user_id"]))
