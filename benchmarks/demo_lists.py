"""The lists a person reads, through the REST API of a running service (as after `make demo`):
known users 1, 2 and 100, the horror and Pixar visitors of issue 16, and a stranger.

    .venv/bin/python -m benchmarks.demo_lists [--url http://127.0.0.1:8000] [-k 10]
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx

VISITORS = {
    "horror visitor (Shining 5, Exorcist 5, Scream 4.5)": ["1258", "1997", "1407"],
    "Pixar visitor (Toy Story 5, Finding Nemo 5, Monsters Inc. 4.5)": ["1", "6377", "4886"],
}


def show(who: str, body: dict[str, Any], genre: str | None = None) -> None:
    items = body["items"]
    hits = f", {sum(genre in i['genres'] for i in items)} {genre}" if genre else ""
    ratings = [i["predicted_rating"] for i in items]
    print(
        f"{who} [{body['strategy']}, predicted {min(ratings):.1f}-{max(ratings):.1f}{hits}]: "
        + "; ".join(i["title"] for i in items)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=30) as client:
        for user in ("1", "2", "100"):
            r = client.get(f"/v1/users/{user}/recommendations", params={"k": args.k})
            r.raise_for_status()
            show(f"user {user}", r.json())
        for (who, films), genre in zip(VISITORS.items(), ("Horror", "Animation"), strict=True):
            given = zip(films, (5.0, 5.0, 4.5), strict=True)
            body = {"ratings": [{"item_id": f, "rating": v} for f, v in given]}
            r = client.post("/v1/recommendations", json={**body, "k": args.k})
            r.raise_for_status()
            show(who, r.json(), genre)
        r = client.get("/v1/users/someone-new/recommendations", params={"k": args.k})
        r.raise_for_status()
        show("a stranger", r.json())


if __name__ == "__main__":
    main()
