"""Simulated traffic against a running service, so a demo's dashboard has a loop to show.

The ratings that `recsys load-sample --hold-out` kept out of the database play the future.
Users ask for recommendations; where a recommended film is one the user really rated later,
they send that rating, attributed to the list; otherwise they click now and then, or skip.
Some rate a film on their own (not an answer to a list), some newcomers rate a few films and
ask. The service is driven only through its public API.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from recsys.errors import ConfigError


@dataclass
class SimulationReport:
    lists: int = 0
    ratings: int = 0
    events: int = 0
    errors: int = 0


def client_for(base_url: str, api_key: str | None) -> httpx.Client:
    """An HTTP client of the service that sends the client key, when there is one."""
    headers = {"X-API-Key": api_key} if api_key else {}
    return httpx.Client(base_url=base_url, timeout=30, headers=headers)


def refused(status: int) -> None:
    """Stop at the first answer that says the key is missing or wrong: every later request
    would be refused the same way."""
    if status in (401, 403):
        raise ConfigError(
            f"the service refused the simulated users' requests ({status}): it wants a client "
            "key; pass --api-key KEY (or set RECSYS_API_KEY)"
        )


def held_out_ratings(path: Path) -> dict[str, dict[str, float]]:
    """user -> {item: rating} from the CSV that `recsys load-sample --hold-out` wrote."""
    frame = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, value in zip(frame["user_id"], frame["item_id"], frame["rating"], strict=True):
        out[user][item] = float(value)
    return dict(out)


def simulate(
    base_url: str,
    held_out: Path,
    *,
    rounds: int = 6,
    users_per_round: int = 150,
    pause_s: float = 10.0,
    seed: int = 0,
    api_key: str | None = None,
) -> SimulationReport:
    """Drive the service at `base_url`; `api_key` is sent as the client key (X-API-Key),
    which a service in production mode wants for feedback."""
    rng = np.random.default_rng(seed)
    truth = held_out_ratings(held_out)
    people = sorted(truth)
    report = SimulationReport()
    with client_for(base_url, api_key) as client:
        for n in range(rounds):
            for user in rng.choice(people, size=min(users_per_round, len(people)), replace=False):
                _one_user(client, str(user), truth[str(user)], rng, report)
                _organic(client, str(user), truth[str(user)], rng, report)
            for v in range(users_per_round // 10):
                _visitor(client, f"sim-new-{n}-{v}", people, truth, rng, report)
            if n + 1 < rounds:
                time.sleep(pause_s)
    return report


def _one_user(
    client: httpx.Client,
    user: str,
    rated: dict[str, float],
    rng: np.random.Generator,
    report: SimulationReport,
) -> None:
    r = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
    refused(r.status_code)
    if r.status_code != 200:
        report.errors += 1
        return
    listed = r.json()
    report.lists += 1
    events = []
    for item in listed["items"]:
        common = {"user_id": user, "item_id": item["item_id"]}
        common["recommendation_id"] = listed["recommendation_id"]
        if item["item_id"] in rated:
            events.append({**common, "kind": "rating", "value": rated.pop(item["item_id"])})
        elif rng.random() < 0.08:
            events.append({**common, "kind": "click"})
        elif rng.random() < 0.3:
            events.append({**common, "kind": "skip"})
    _send(client, events, report)


def _organic(
    client: httpx.Client,
    user: str,
    rated: dict[str, float],
    rng: np.random.Generator,
    report: SimulationReport,
) -> None:
    """Now and then a user rates a film they found elsewhere: not an answer to our lists."""
    if rated and rng.random() < 0.2:
        item = str(rng.choice(list(rated)))
        _send(
            client,
            [{"user_id": user, "item_id": item, "kind": "rating", "value": rated.pop(item)}],
            report,
        )


def _visitor(
    client: httpx.Client,
    user: str,
    people: list[str],
    truth: dict[str, dict[str, float]],
    rng: np.random.Generator,
    report: SimulationReport,
) -> None:
    """A new user who rates a few films someone liked, then asks for recommendations."""
    model_user = truth[str(rng.choice(people))]
    chosen = list(model_user.items())[:5]
    events = [{"user_id": user, "item_id": i, "kind": "rating", "value": v} for i, v in chosen]
    _send(client, events, report)
    r = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
    report.lists += r.status_code == 200
    report.errors += r.status_code != 200


def _send(client: httpx.Client, events: list[dict[str, object]], report: SimulationReport) -> None:
    if not events:
        return
    r = client.post("/v1/feedback", json={"events": events})
    refused(r.status_code)
    if r.status_code == 201:
        report.ratings += sum(e["kind"] == "rating" for e in events)
        report.events += sum(e["kind"] != "rating" for e in events)
    else:
        report.errors += 1
