"""The hot route's query string: parsed once per distinct string, shared frozen."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request

from service.query import CACHED_LENGTH, parse_query
from service.schemas import RecommendationsQuery


def request(query: str) -> Request:
    return Request({"type": "http", "query_string": query.encode(), "headers": []})


def test_a_query_string_is_parsed_once_and_shared_frozen() -> None:
    first = parse_query(request("k=7&exclude=1&exclude=2"), RecommendationsQuery)
    again = parse_query(request("k=7&exclude=1&exclude=2"), RecommendationsQuery)
    assert again is first
    assert (first.k, first.exclude) == (7, ["1", "2"])
    with pytest.raises(ValidationError):
        first.k = 3  # type: ignore[misc]  # frozen: a request cannot change another's options
    other = parse_query(request("k=8"), RecommendationsQuery)
    assert (other.k, other.exclude) == (8, [])


def test_long_query_strings_are_parsed_each_time_and_errors_are_not_kept() -> None:
    long = "k=5&" + "&".join(f"exclude=item{n}" for n in range(40))
    assert len(long) > CACHED_LENGTH
    parsed = parse_query(request(long), RecommendationsQuery)
    assert len(parsed.exclude) == 40
    assert parse_query(request(long), RecommendationsQuery) is not parsed
    for _ in range(2):  # a bad query fails every time it is sent
        with pytest.raises(RequestValidationError):
            parse_query(request("k=0"), RecommendationsQuery)
