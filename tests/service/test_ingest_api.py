"""Ratings CSV over HTTP: the whole file or nothing, line-numbered errors, limits, and only
for the operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from recsys.store.db import session_scope
from recsys.store.tables import ratings
from service.app import create_app
from tests.service.conftest import Served

TOKEN = "ingest-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"}


@pytest.fixture(scope="module")
def operator(served: Served) -> Iterator[TestClient]:
    settings = served.settings(operator_token=TOKEN, max_upload_rows=100)
    with TestClient(create_app(settings)) as c:
        yield c


def count(served: Served) -> int:
    with session_scope(served.engine) as s:
        return int(s.scalar(select(func.count()).select_from(ratings)) or 0)


def test_upload_applies_a_valid_file(operator: TestClient, served: Served) -> None:
    before = count(served)
    body = "user_id,item_id,rating,timestamp\nup1,film0,4.5,1700000000\nup1,film1,2,1700000001\n"
    r = operator.post("/v1/ingest/ratings", content=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == 2 and r.json()["new_ratings"] == 2
    assert count(served) == before + 2
    again = operator.post("/v1/ingest/ratings", content=body, headers=AUTH)
    assert again.json()["new_ratings"] == 0  # idempotent


def test_bad_file_writes_nothing_and_names_the_lines(operator: TestClient, served: Served) -> None:
    before = count(served)
    body = "user_id,item_id,rating\nok,film0,4\nbad,film0,eleven\nworse,film1,9\n"
    r = operator.post("/v1/ingest/ratings", content=body, headers=AUTH)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [e["line"] for e in errors] == [3, 4]
    assert "not a number" in errors[0]["message"] and "outside" in errors[1]["message"]
    # Named for the client, not by the server's temporary file.
    assert r.json()["detail"].startswith("the uploaded file: 2 bad row(s)"), r.json()
    assert "/tmp" not in r.text
    assert count(served) == before
    named = operator.post(
        "/v1/ingest/ratings",
        content="who,what,stars\nnamed,film2,3\n",
        headers=AUTH,
        params={"user_col": "who", "item_col": "what", "rating_col": "stars"},
    )
    assert named.status_code == 200 and named.json()["rows"] == 1


def test_dates_beyond_any_calendar_are_bad_lines(operator: TestClient, served: Served) -> None:
    """Dates outside pandas' nanosecond range (1677-2262) crashed the upload with a 500."""
    before = count(served)
    body = (
        "user_id,item_id,rating,timestamp\nok,film0,4,2020-01-01\n"
        "a,film0,4,9999-12-31T00:00:00Z\nb,film1,4,1600-01-01\nc,film2,4,2263-01-01\n"
    )
    r = operator.post("/v1/ingest/ratings", content=body, headers=AUTH)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [e["line"] for e in errors] == [3, 4, 5]
    assert "in the future" in errors[0]["message"] and "before 1970" in errors[1]["message"]
    assert count(served) == before


def test_a_file_of_thousands_of_columns_is_refused_at_its_header(operator: TestClient) -> None:
    """One row of 40,000 columns took up to a minute to parse while holding the ingest lock."""
    header = "user_id,item_id,rating," + ",".join(f"c{n}" for n in range(40_000))
    body = header + "\n" + "u,film0,4," + ",".join("x" * 40_000) + "\n"
    r = operator.post("/v1/ingest/ratings", content=body, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["errors"][0]["line"] == 1
    assert "40,003 columns, more than 256" in r.json()["errors"][0]["message"]


def test_what_the_upload_refuses(operator: TestClient, served: Served) -> None:
    before = count(served)
    slash = operator.post(
        "/v1/ingest/ratings", content="user_id,item_id,rating\na/b,film0,3\n", headers=AUTH
    )
    assert slash.status_code == 422 and "contains '/'" in slash.json()["errors"][0]["message"]
    long_header = "x" * (1 << 20) + ",user_id,item_id,rating\nq,u,film0,3\n"
    r = operator.post("/v1/ingest/ratings", content=long_header, headers=AUTH)
    assert r.status_code == 422 and "longer than 1 MB" in r.json()["errors"][0]["message"]
    plain = {**AUTH, "Content-Type": "text/plain"}
    r = operator.post(
        "/v1/ingest/ratings", content="user_id,item_id,rating\nu,film0,3\n", headers=plain
    )
    assert r.status_code == 415 and "text/csv" in r.json()["detail"]
    assert count(served) == before


def test_upload_limits_and_credential(operator: TestClient) -> None:
    rows = "".join(f"u{n},film0,3\n" for n in range(150))
    r = operator.post("/v1/ingest/ratings", content="user_id,item_id,rating\n" + rows, headers=AUTH)
    assert r.status_code == 413 and "RECSYS_MAX_UPLOAD_ROWS" in r.json()["detail"]
    r = operator.post("/v1/ingest/ratings", content="", headers=AUTH)
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = operator.post("/v1/ingest/ratings", content="user_id,item_id,rating\nu,film0,3\n")
    assert r.status_code == 401
