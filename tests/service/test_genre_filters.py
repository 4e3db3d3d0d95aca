"""Genre filters at request time (`genre=`, `exclude_genre=`), applied before the top k is
cut, on every kind of list; and genres as a list in every answer."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.service.conftest import GENRES, genre_of


def genres_of(body: dict[str, object]) -> set[str]:
    items = body["items"]
    assert isinstance(items, list) and items, body
    for item in items:
        assert item["genres"] == [genre_of(item["item_id"])], item
    return {genre_of(item["item_id"]) for item in items}


def test_a_known_user_gets_a_genre_they_do_not_love_when_asked(client: TestClient) -> None:
    # user0 loves GENRES[0]: their unfiltered top 5 is all of it, so the filter must look
    # past the cached best items, not filter a cut list down to nothing.
    plain = client.get("/v1/users/user0/recommendations", params={"k": 5}).json()
    assert genres_of(plain) == {GENRES[0]}
    r = client.get("/v1/users/user0/recommendations", params={"k": 5, "genre": GENRES[1]})
    assert r.status_code == 200, r.text
    assert genres_of(r.json()) == {GENRES[1]} and len(r.json()["items"]) == 5
    # Any of several genres, named in any case.
    both = client.get(
        "/v1/users/user0/recommendations",
        params={"k": 20, "genre": [GENRES[1].upper(), GENRES[2].lower()]},
    ).json()
    assert genres_of(both) == {GENRES[1], GENRES[2]}


def test_excluding_a_genre_drops_it_and_keeps_k(client: TestClient) -> None:
    r = client.get(
        "/v1/users/user0/recommendations", params={"k": 8, "exclude_genre": GENRES[0]}
    ).json()
    assert GENRES[0] not in genres_of(r) and len(r["items"]) == 8
    scores = [i["score"] for i in r["items"]]
    assert scores == sorted(scores, reverse=True)


def test_visitors_cold_start_and_similar_items_take_the_filter(client: TestClient) -> None:
    rated = [f"film{i}" for i in range(0, 15, 3)]  # all GENRES[0]
    body = {"ratings": [{"item_id": i, "rating": 5.0} for i in rated], "k": 4}
    visitor = client.post("/v1/recommendations", params={"genre": GENRES[2]}, json=body)
    assert visitor.status_code == 200, visitor.text
    assert visitor.json()["strategy"] == "fold_in" and genres_of(visitor.json()) == {GENRES[2]}
    stranger = client.get(
        f"/v1/users/{uuid.uuid4()}/recommendations",
        params={"k": 4, "exclude_genre": [GENRES[0], GENRES[1]]},
    ).json()
    assert stranger["strategy"] == "cold_start" and genres_of(stranger) == {GENRES[2]}
    similar = client.get("/v1/items/film0/similar", params={"k": 3, "genre": GENRES[1]})
    assert similar.status_code == 200, similar.text
    assert genres_of(similar.json()) == {GENRES[1]}


def test_an_unknown_genre_is_a_422_that_names_the_known_ones(client: TestClient) -> None:
    for path in ("/v1/users/user0/recommendations", "/v1/items/film0/similar"):
        r = client.get(path, params={"genre": "Horor"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "'horor'" in detail and all(g in detail for g in GENRES), detail
