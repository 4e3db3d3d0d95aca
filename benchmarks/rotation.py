"""Rotation on the simulator: a month of daily lists with rotation off and on, and off-policy
evaluation of a rotating policy against its simulated truth.

    .venv/bin/python -m benchmarks.rotation [--reps 50] [--users 100]

The world is `benchmarks.off_policy`'s: the truth a model fitted on every MovieLens rating
(P(choose) x P(like), the offset set for about 0.1 positive answers per slot), the serving
policy a model fitted on a random half, lists of 10 among films with at least 10 ratings,
never a film the user rated, 10 % of the slots exploring. Every user gets a list a day for 28
days (drawn per user and day, as the service seeds it); each shown film is answered
positively with its true probability, and a film answered positively is consumed (rated: it
never comes back). Rotation (`recsys.lists.rotation`, default settings) demotes what a user
was shown on `after` days without answering.

1. Per variant (rotation off, on): repeats per user-week (showings of a film already shown
   to the user earlier that week), catalog coverage (films shown at least once, of those a
   list may hold), the true positive rate per slot (the truth's expectation over the slots
   shown) and the answers drawn.
2. Off-policy evaluation: the logging policy is the service without rotation; the target is
   the rotating policy, its penalties computed from the logged history before each list (as
   the service records them). Over `--reps` repetitions of a month of `--users` random
   users, how often each estimator's 95 % interval holds the target's true rate on those
   lists.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from benchmarks.off_policy import K, Matrices, simulated
from recsys.exploration import ExplorePolicy, daily_rng
from recsys.lists.rotation import DAY_S, Rotation
from recsys.offpolicy.estimators import RewardModel, Slots, estimate
from recsys.offpolicy.simulator import World

DAYS = [date(2026, 11, 2) + timedelta(days=d) for d in range(28)]
POLICY = ExplorePolicy(0.1)


@dataclass
class History:
    """One user's month so far: what they consumed, and the days each film was shown since
    their last answer on it."""

    consumed: set[int] = field(default_factory=set)
    shown: dict[str, list[float]] = field(default_factory=dict)

    def scores(self, base: np.ndarray, rotation: Rotation | None, now: float) -> np.ndarray:
        scores = base.copy()
        scores[list(self.consumed)] = -np.inf
        if rotation is not None:
            for item, penalty in rotation.demotions(self.shown, now).items():
                scores[int(item)] -= penalty
        return scores

    def answered(self, items: np.ndarray, hits: np.ndarray, now: float) -> None:
        for item, hit in zip(items.tolist(), hits.tolist(), strict=True):
            if hit:
                self.consumed.add(item)
                self.shown.pop(str(item), None)
            else:
                self.shown.setdefault(str(item), []).append(now)


def month(world: World, a: Matrices, rotation: Rotation | None, users: np.ndarray) -> str:
    """A month of daily lists for `users`; its figures as one line."""
    histories = {int(u): History() for u in users}
    rng = np.random.default_rng(7)
    shown_at_all = np.zeros(world.truth.shape[1], dtype=bool)
    repeats = answers = slots = 0
    expected = 0.0
    for d, day in enumerate(DAYS):
        week_start = d % 7 == 0
        if week_start:
            this_week: dict[int, set[int]] = {int(u): set() for u in users}
        for u in users.tolist():
            history = histories[u]
            drawn = POLICY.layout(history.scores(a.scores[u], rotation, d * DAY_S), K).draw(
                daily_rng(str(u), day)
            )
            items = drawn.candidates
            p = world.truth[u, items]
            hits = rng.random(len(p)) < p
            history.answered(items, hits, d * DAY_S)
            repeats += sum(i in this_week[u] for i in items.tolist())
            this_week[u].update(items.tolist())
            shown_at_all[items] = True
            expected += float(p.sum())
            answers += int(hits.sum())
            slots += len(items)
    listable = (np.isfinite(a.scores).any(axis=0)).sum()
    user_weeks = len(users) * len(DAYS) / 7
    return (
        f"repeats per user-week {repeats / user_weeks:5.2f}, "
        f"coverage {shown_at_all.sum() / listable:6.1%}, "
        f"true rate {expected / slots:.4f}, answered {answers / slots:.4f}"
    )


def logged_month(
    world: World, a: Matrices, rotation: Rotation, users: np.ndarray, seed: int
) -> tuple[Slots, float]:
    """A month logged by the policy without rotation, judged for the rotating one: the
    estimators' input and the target's true rate per slot on those lists."""
    rng = np.random.default_rng(seed)
    histories = {int(u): History() for u in users}
    lists, logging, target, reward, predicted, direct, truth_rows = [], [], [], [], [], [], []
    size = []
    n = 0
    for d in range(len(DAYS)):
        for u in users.tolist():
            history = histories[u]
            now = d * DAY_S
            drawn = POLICY.layout(history.scores(a.scores[u], None, now), K).draw(
                np.random.default_rng(rng.integers(1 << 62))
            )
            inclusion = POLICY.layout(history.scores(a.scores[u], rotation, now), K).inclusion(
                world.truth.shape[1]
            )
            items = drawn.candidates
            hits = rng.random(len(items)) < world.truth[u, items]
            history.answered(items, hits, now)
            lists.append(np.full(len(items), n))
            size.append(len(items))
            logging.append(drawn.propensities)
            target.append(inclusion[items])
            reward.append(hits.astype(np.float64))
            predicted.append(a.predicted[u, items])
            direct.append((inclusion, u))
            truth_rows.append(float(inclusion @ world.truth[u]) / float(inclusion.sum()))
            n += 1
    rewards, features = np.concatenate(reward), np.concatenate(predicted)
    model = RewardModel.fit(features, rewards)
    slots = Slots(
        lists=np.concatenate(lists),
        size=np.array(size),
        logging=np.concatenate(logging),
        target=np.concatenate(target),
        reward=rewards,
        predicted=model(features),
        direct=np.array([float(inc @ model(a.predicted[u])) for inc, u in direct]),
        unsupported=np.zeros(n),
    )
    return slots, float(np.mean(truth_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args()
    t0 = time.perf_counter()
    sim = simulated(POLICY)
    world, a = sim.world, sim.a
    print(f"models and truth ready in {time.perf_counter() - t0:.0f} s; "
          f"truth offset {sim.offset:.2f}")  # fmt: skip
    rotation = Rotation()
    everyone = np.arange(sim.data.n_users)
    print(f"\n1. a month, {len(everyone)} users, a list of {K} a day, exploring 10 %")
    print(f"  rotation off:  {month(world, a, None, everyone)}")
    print(f"  rotation on:   {month(world, a, rotation, everyone)}  ({rotation})")
    print(f"\n2. off-policy evaluation of the rotating policy, {args.reps} months of "
          f"{args.users} users")  # fmt: skip
    hits: dict[str, int] = {"ips": 0, "snips": 0, "dr": 0}
    found: dict[str, list[float]] = {key: [] for key in hits}
    truths = []
    for rep in range(args.reps):
        users = np.random.default_rng(100 + rep).choice(everyone, args.users, replace=False)
        slots, truth = logged_month(world, a, rotation, users, 1000 + rep)
        e = estimate(slots)
        truths.append(truth)
        for key, interval in (("ips", e.ips), ("snips", e.snips), ("dr", e.dr)):
            assert interval is not None
            found[key].append(interval.value)
            hits[key] += interval.covers(truth)
    for key in hits:
        mean = np.mean(found[key])
        print(f"  {key:>6}: coverage {hits[key] / args.reps:4.0%}, mean estimate {mean:.4f} "
              f"against a mean truth of {np.mean(truths):.4f}")  # fmt: skip
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
