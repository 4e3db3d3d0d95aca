"""Live known users on MovieLens, through the real API: how much of a retrain's gain a
user's feedback brings to their list between retrains, and what a live list costs.

    .venv/bin/python -m benchmarks.live_replay [--seconds 20] [--rate 200]

Each user's ratings are split in time: the earliest 80 % train a model (`recsys ingest`,
`recsys train` with default settings, into a fresh SQLite database), and `recsys serve`
serves it. Of each user's latest 20 %, the earlier half is sent as feedback through
`POST /v1/feedback` and the later half judges the lists, by NDCG@10 of the later half's
liked films (rated 4 or more), for
(a) the static list: `GET /v1/users/{id}/recommendations` before the feedback;
(b) the live list: the same request after it (strategy "live");
(c) a full retrain: `recsys train` again, on the training ratings and the feedback, its
    served model's lists for the same users (as the API serves a learned user).
Prints the three figures and the share of the gap from (a) to (c) that (b) closes; then the
latency of live lists at `--rate` requests a second (open loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import create_engine

from benchmarks.harness import open_loop, recsys, serving
from benchmarks.rawhttp import Call
from recsys import registry
from recsys.config import Settings
from recsys.data import samples
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model import artifact
from service.recent_feedback import OVERLAP

K = 10
LIKED = 4.0


def split(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training ratings, then each user's feedback (the earlier half of their latest 20 %)
    and judged ratings (the later half)."""
    ordered = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    position = ordered.groupby("user_id").cumcount()
    size = ordered.groupby("user_id")["item_id"].transform("size")
    held = position >= np.ceil(size * 0.8)
    first = held & (position < np.ceil(size * 0.8) + (size - np.ceil(size * 0.8)) // 2)
    return ordered[~held], ordered[first], ordered[held & ~first]


def ndcg(listed: list[str], relevant: set[str]) -> float:
    gains = [1.0 / np.log2(r + 2) for r, item in enumerate(listed[:K]) if item in relevant]
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(K, len(relevant))))
    return float(sum(gains) / ideal)


async def _lists(base: str, users: list[str]) -> dict[str, tuple[str, list[str]]]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        out = {}
        for user in users:
            body = (await client.get(f"/v1/users/{user}/recommendations", params={"k": K})).json()
            out[user] = (body["strategy"], [i["item_id"] for i in body["items"]])
        return out


async def _send(base: str, feedback: pd.DataFrame) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for user, rows in feedback.groupby("user_id"):
            events = [
                {"user_id": str(user), "item_id": str(i), "kind": "rating", "value": float(v)}
                for i, v in zip(rows["item_id"], rows["rating"], strict=True)
            ]
            answer = await client.post("/v1/feedback", json={"events": events})
            answer.raise_for_status()


def retrained_lists(env: dict[str, str], users: list[str]) -> dict[str, list[str]]:
    """(c): `recsys train` on everything stored now; its served model's lists."""
    recsys(env, "train", "--no-promote")
    engine = create_engine(env["RECSYS_DATABASE_URL"])
    newest = registry.list_versions(engine, limit=1)[0]
    engine.dispose()
    ranker = Ranker(artifact.load(Path(newest["artifact_path"])))
    ask = ListRequest(K, min_support=Settings().recommend_min_support)
    return {u: [s.item_id for s in ranker.recommend(u, ask)] for u in users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores", flush=True)
    sample = samples.movielens()
    ratings = sample.ratings.assign(rating=sample.ratings["rating"].astype(float))
    train, feedback, judged = split(ratings)
    relevant = {
        str(u): set(rows.loc[rows["rating"] >= LIKED, "item_id"].astype(str))
        for u, rows in judged.groupby("user_id")
    }
    senders = set(feedback["user_id"].astype(str))
    users = sorted(u for u, r in relevant.items() if r and u in senders)
    print(
        f"{len(train):,} training ratings; {len(feedback):,} sent as feedback by "
        f"{len(senders)} users; {len(users)} users judged",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train.to_csv(folder / "train.csv", index=False)
        sample.items.to_csv(folder / "items.csv", index=False)
        env = {
            **os.environ,
            "RECSYS_DATABASE_URL": f"sqlite:///{folder / 'live.db'}",
            "RECSYS_ARTIFACT_DIR": str(folder / "artifacts"),
            "RECSYS_DEV_MODE": "true",
        }
        recsys(env, "db", "upgrade")
        recsys(env, "ingest", str(folder / "train.csv"), "--items", str(folder / "items.csv"))
        recsys(env, "train")
        with serving(env) as base:
            static = asyncio.run(_lists(base, users))
            asyncio.run(_send(base, feedback))
            live = asyncio.run(_lists(base, users))
            strategies = {s for s, _ in live.values()}

            def call(n: int) -> Call:
                return Call.get(f"/v1/users/{users[n % len(users)]}/recommendations", k=K)

            # At once, while every replica's poll still reads the burst of feedback again
            # (`service.recent_feedback.OVERLAP`); then once that has passed.
            results = [open_loop(base, args.rate, args.seconds, call)]
            time.sleep(max(0.0, OVERLAP.total_seconds() + 5 - args.seconds))
            results.append(open_loop(base, args.rate, args.seconds, call))
        retrained = retrained_lists(env, users)
    a = np.mean([ndcg(static[u][1], relevant[u]) for u in users])
    b = np.mean([ndcg(live[u][1], relevant[u]) for u in users])
    c = np.mean([ndcg(retrained[u], relevant[u]) for u in users])
    print(f"live lists' strategies: {sorted(strategies)}")
    print(f"NDCG@10 of the later half's liked films: (a) static {a:.4f}, (b) live {b:.4f}, "
          f"(c) retrained {c:.4f}; (b) closes {(b - a) / (c - a):.0%} of the gap from (a) "
          "to (c)" if c != a else "no gap from (a) to (c)")  # fmt: skip
    rate = f"live lists at {args.rate:.0f}/s"
    print(f"{rate}, right after the feedback: {results[0].summary()}")
    print(f"{rate}, {OVERLAP.total_seconds():.0f} s on: {results[1].summary()}")


if __name__ == "__main__":
    main()
