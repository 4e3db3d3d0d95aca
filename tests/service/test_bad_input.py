"""Bad input gets a 4xx with a message that says what is wrong; never a 500."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

BAD_REQUESTS: list[tuple[str, str, object, str]] = [
    ("GET", "/v1/users/user0/recommendations?k=0", None, "greater than or equal to 1"),
    ("GET", "/v1/users/user0/recommendations?k=1001", None, "above the limit of 1000"),
    ("GET", "/v1/users/user0/recommendations?k=abc", None, "valid integer"),
    ("GET", "/v1/users/user0/recommendations?min_support=-1", None, "query.min_support"),
    ("GET", "/v1/users/user0/recommendations?include_rated=maybe", None, "valid boolean"),
    ("GET", "/v1/users/user0/recommendations?exclude=a&exclude=b%00", None, "query.exclude.1"),
    ("GET", "/v1/users/" + "x" * 300 + "/recommendations", None, "at most 255"),
    ("GET", "/v1/users/a%00b/recommendations", None, "path.user_id"),
    ("GET", "/v1/predictions?user_id=user0", None, "query.item_id: Field required"),
    ("GET", "/v1/predictions?user_id=&item_id=film0", None, "at least 1 character"),
    ("POST", "/v1/predictions", {"pairs": []}, "at least 1 item"),
    ("POST", "/v1/predictions", {"pairs": [{"user_id": 1}]}, "valid string"),
    ("POST", "/v1/recommendations", {"ratings": []}, "at least 1 item"),
    ("POST", "/v1/recommendations", {"ratings": [{"item_id": "film0", "rating": 9}]}, "outside"),
    ("POST", "/v1/recommendations", {"ratings": [{"item_id": "f", "ratng": 4}]}, "Extra inputs"),
    ("POST", "/v1/feedback", {"user_id": "u", "item_id": "film0"}, "a rating needs a value"),
    ("POST", "/v1/feedback", {"user_id": "u", "item_id": "film0", "value": 0.1}, "outside"),
    ("POST", "/v1/feedback", {"user_id": "u", "item_id": "film0", "kind": "poke"}, "kind"),
    ("POST", "/v1/feedback", {"user_id": "u", "item_id": "nope", "value": 3}, "not in the catalog"),
    (
        "POST",
        "/v1/feedback",
        {"user_id": "u", "item_id": "film0", "value": 3, "occurred_at": "2999-01-01T00:00:00"},
        "in the future",
    ),
    (
        "POST",
        "/v1/feedback",
        {"user_id": "u", "item_id": "film0", "value": 3, "occurred_at": "1969-12-31T23:59:59Z"},
        "before 1970",
    ),
    (
        "POST",
        "/v1/feedback",
        {"user_id": "u", "item_id": "film0", "value": 3, "occurred_at": "0001-01-01T00:00:00Z"},
        "before 1970",
    ),
    # Strict, finite values: NaN, infinity and booleans were stored as they came.
    ("POST", "/v1/feedback", {"user_id": "u", "item_id": "film0", "value": True}, "valid number"),
    ("POST", "/v1/feedback", {"user_id": "u", "item_id": "film0", "value": "4"}, "valid number"),
    (
        "POST",
        "/v1/feedback",
        {"user_id": "u", "item_id": "film0", "kind": "click", "value": -2},
        "cannot be negative",
    ),
    ("POST", "/v1/recommendations", {"ratings": [{"item_id": "f", "rating": True}]}, "number"),
    ("POST", "/v1/feedback", {"user_id": "a/b", "item_id": "film0", "value": 3}, "contains '/'"),
    ("POST", "/v1/items", {"items": [{"item_id": "x/y", "title": "Slash"}]}, "contains '/'"),
    ("POST", "/v1/feedback", {"events": []}, "at least 1 item"),
    # One event and a batch are told apart: an error speaks of the shape that was sent.
    (
        "POST",
        "/v1/feedback",
        {"user_id": "u", "item_id": "film0", "value": "x"},
        "body.event.value: Input should be a valid number",
    ),
    (
        "POST",
        "/v1/feedback",
        {"events": [{"user_id": "u", "item_id": "film0", "value": "x"}]},
        "body.batch.events.0.value: Input should be a valid number",
    ),
    ("POST", "/v1/items", {"items": [{"item_id": "a"}, {"item_id": "a"}]}, "appear once"),
    ("PUT", "/v1/items/x", {"genres": ["a|b"]}, "may not contain '|'"),
    ("PUT", "/v1/items/x", {"title": 5}, "valid string"),
    ("GET", "/v1/items/film0/similar?k=100000", None, "above the limit"),
    # NUL cannot be stored by PostgreSQL: refused at the boundary (the fuzzer found it).
    ("POST", "/v1/feedback", {"user_id": "a\u0000b", "item_id": "film0", "value": 3}, "user_id"),
    ("PUT", "/v1/items/a%00b", {"title": "x"}, "item_id"),
    # An integer beyond 64 bits passed validation and overflowed the impression row's JSON.
    (
        "GET",
        "/v1/users/user0/recommendations?min_support=18446744073709551616",
        None,
        "less than or equal to 1000000000",
    ),
    ("GET", "/v1/items/film0/similar?min_support=18446744073709551616", None, "min_support"),
    # Free-form metadata that could be parsed but not stored or written back.
    ("PUT", "/v1/items/x", {"metadata": {"x": "\ud800"}}, "lone surrogate"),
    ("PUT", "/v1/items/x", {"metadata": {"x": "a" * 70_000}}, "65,536 bytes"),
    ("POST", "/v1/feedback", {"user_id": "\udfff", "item_id": "film0", "value": 3}, "surrogate"),
]


def _nested(levels: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def test_deeply_nested_bodies_are_refused(client: TestClient) -> None:
    """900 levels of metadata were accepted, then could not be written as JSON: a 500."""
    r = client.put("/v1/items/deep", json={"title": "x", "metadata": _nested(900)})
    assert r.status_code == 422 and "nested more than 32 levels" in r.json()["detail"]
    # Beyond what Python's parser reads at all: still a 4xx.
    body = b'{"metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    r = client.put("/v1/items/deep", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    ok = client.put("/v1/items/deep", json={"title": "x", "metadata": _nested(20)})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(("method", "url", "body", "message"), BAD_REQUESTS)
def test_bad_input_is_a_422_with_a_message(
    client: TestClient, method: str, url: str, body: object, message: str
) -> None:
    # JSON as json.dumps writes it (ASCII, escapes such as \ud800 kept as escapes).
    content = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    r = client.request(method, url, content=content, headers=headers)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"], r.json()
    assert "function-after" not in r.json()["detail"]  # no validator names from pydantic


def test_malformed_json_and_wrong_content(client: TestClient) -> None:
    r = client.post("/v1/feedback", content=b"{bad", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = client.post(
        "/v1/predictions", content=b"[1, 2]", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    "value", [b"NaN", b"Infinity", b"-Infinity", b"1e309"], ids=["nan", "inf", "-inf", "1e309"]
)
def test_feedback_values_must_be_finite(client: TestClient, value: bytes) -> None:
    """JSON as Python reads it takes NaN and Infinity literals, and 1e309 overflows to inf."""
    for kind in (b"rating", b"click", b"like"):
        body = b'{"user_id": "u", "item_id": "film0", "kind": "%s", "value": %s}' % (kind, value)
        r = client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert "finite number" in r.json()["detail"]


def test_batch_limits(client: TestClient) -> None:
    pairs = [{"user_id": "u", "item_id": "film0"}] * 1001
    r = client.post("/v1/predictions", json={"pairs": pairs})
    assert r.status_code == 422 and "above the limit of 1000" in r.json()["detail"]


def test_ids_of_any_form(client: TestClient) -> None:
    for user in ("ünïcødé user", "with space", "42", "a.b-c_d", "ø:@!"):
        # Clients percent-encode ids in paths, as for any URL segment.
        r = client.get(f"/v1/users/{quote(user, safe='')}/recommendations", params={"k": 2})
        assert r.status_code == 200, (user, r.text)
        assert r.json()["user_id"] == user
        assert r.json()["strategy"] == "cold_start"


def test_failed_feedback_batch_writes_nothing(client: TestClient) -> None:
    events = [
        {"user_id": "batch-user", "item_id": "film0", "value": 5},
        {"user_id": "batch-user", "item_id": "not-an-item", "value": 5},
    ]
    assert client.post("/v1/feedback", json={"events": events}).status_code == 422
    r = client.get("/v1/users/batch-user/recommendations")
    assert r.json()["strategy"] == "cold_start"  # the first event was not stored either
