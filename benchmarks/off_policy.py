"""Off-policy evaluation against a known truth, on MovieLens (issue 19).

    .venv/bin/python -m benchmarks.off_policy [--reps 50] [--impressions 10000]

The truth is a model fitted on every MovieLens rating (`recsys.offpolicy.simulator.World`):
a user answers a shown film positively with P(choose) x P(like | chosen). The offset of
P(choose) is set so that the logging policy's lists earn about 0.1 positive answers per slot.
Policy A (production, the logging policy) and policy B (the candidate) are models trained on
two different random halves of the ratings, served as the service serves them: lists of 10
among films with at least 10 ratings, never a film the user rated, with A exploring 10 % of
the slots (`ExplorePolicy(0.1)`). B is judged as it would ship: without exploration, and with.

1. Coverage: over `--reps` seeded repetitions of `--impressions` logged slots, how often the
   95 % interval of each estimator holds B's true rate (computed exactly from the truth).
2. SNIPS's mean absolute error against the truth for 10k, 100k and 1M logged impressions.
3. Exploration's effect over a simulated week (every user gets a list a day, seeded per
   (user, day)): catalog coverage of what was shown and the true positive rate, per share.
4. With exploration off, the estimators refuse.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from benchmarks.train_movielens import movielens
from recsys.data.interactions import Interactions
from recsys.evaluation.remap import remap
from recsys.exploration import ExplorePolicy, Layout, daily_rng
from recsys.offpolicy.estimators import NoSupportError, RewardModel, Slots, estimate
from recsys.offpolicy.simulator import Logged, World, judged
from recsys.train_config import TrainConfig
from recsys.training.pipeline import fit

K = 10
MIN_SUPPORT = 10
TARGET_RATE = 0.1


@dataclass
class Matrices:
    scores: np.ndarray
    predicted: np.ndarray


def matrices(data: Interactions, part: Interactions, seed: int, eligible: np.ndarray) -> Matrices:
    """A model fitted on `part`, seen through the full data's rows: ranking scores (-inf where
    a list may not go: rated films, films below the support) and predicted ratings."""
    rec = fit(part, TrainConfig(seed=seed, serve_refit=False)).recommender
    scorer = remap(rec, data)
    users = np.arange(data.n_users)
    scores = scorer.rank_scores(users).numpy().astype(np.float64)
    rows = np.repeat(users, data.n_items)
    cols = np.tile(np.arange(data.n_items), data.n_users)
    predicted = scorer.predict_rows(rows, cols).reshape(data.n_users, data.n_items)
    return Matrices(np.where(eligible, scores, -np.inf), predicted)


def seen_mask(data: Interactions) -> np.ndarray:
    seen = np.zeros((data.n_users, data.n_items), dtype=bool)
    seen[data.users, data.items] = True
    return seen


@dataclass
class Simulated:
    """The simulated world and the logging policy's model over the full data's rows."""

    data: Interactions
    counts: np.ndarray
    """Ratings per item."""
    eligible: np.ndarray
    """users x items: where a list may go (enough ratings, not rated by the user)."""
    halves: np.ndarray
    """Per rating: in the half policy A was fitted on."""
    a: Matrices
    world: World
    offset: float
    layouts: list[Layout]
    """Policy A's layout of each user, served with the given exploration."""


def simulated(policy: ExplorePolicy) -> Simulated:
    """The truth (a model fitted on every MovieLens rating) and policy A (one fitted on a
    random half), the truth's offset walked until A, served with `policy`, earns about
    TARGET_RATE positive answers per slot."""
    data = movielens()
    counts = np.bincount(data.items, minlength=data.n_items)
    eligible = (counts >= MIN_SUPPORT)[None, :] & ~seen_mask(data)
    truth_model = matrices(data, data, 1, eligible)
    halves = np.random.default_rng(0).random(len(data)) < 0.5
    a = matrices(data, data.subset(np.flatnonzero(halves)), 2, eligible)
    liked = 1.0 / (1.0 + np.exp(-2.0 * (truth_model.predicted - 4.0)))
    offset = 0.0
    for _ in range(30):  # bisection-free: walk the offset until A earns about TARGET_RATE
        world = World.from_scores(truth_model.scores, liked, offset)
        layouts = world.layouts(policy, a.scores, K)
        rate = world.value(world.inclusion(layouts))
        if abs(rate - TARGET_RATE) < 0.002:
            break
        offset += np.log(rate / TARGET_RATE) * 1.5
    return Simulated(data, counts, eligible, halves, a, world, offset, layouts)


def with_reward_model(
    logged: Logged, target: np.ndarray, logging: np.ndarray, b: Matrices
) -> Slots:
    users = logged.users[logged.lists]
    model = RewardModel.fit(b.predicted[users, logged.items], logged.rewards)
    return judged(logged, target, logging, model(b.predicted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--impressions", type=int, default=10_000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    sim = simulated(ExplorePolicy(0.1))
    world, a, la = sim.world, sim.a, sim.layouts
    b = matrices(sim.data, sim.data.subset(np.flatnonzero(~sim.halves)), 3, sim.eligible)
    inc_a = world.inclusion(la)
    print(f"models and truth ready in {time.perf_counter() - t0:.0f} s; "
          f"truth offset {sim.offset:.2f}")  # fmt: skip
    print(f"true positive rate per slot: A (explore 0.1) {world.value(inc_a):.4f}")

    targets = {}
    for share in (0.0, 0.1):
        lb = world.layouts(ExplorePolicy(share), b.scores, K)
        targets[f"B, explore {share}"] = world.inclusion(lb)
        print(f"  B (explore {share}) {world.value(targets[f'B, explore {share}']):.4f}")

    _coverage(world, la, inc_a, b, targets, args.reps, args.impressions)
    _snips_error(world, la, inc_a, targets["B, explore 0.0"])
    _week(world, a, sim.eligible, sim.counts)
    _refuses(world, a, targets["B, explore 0.0"])
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


def _coverage(
    world: World,
    la: list[Layout],
    inc_a: np.ndarray,
    b: Matrices,
    targets: dict[str, np.ndarray],
    reps: int,
    impressions: int,
) -> None:
    print(f"\n1. interval coverage over {reps} repetitions of {impressions:,} impressions")
    print(
        f"{'target':<18}{'estimator':>10}{'coverage':>10}{'mean est':>10}{'truth':>8}"
        f"{'mean ESS':>10}{'max w':>9}{'clipped':>9}"
    )
    for name, inc_b in targets.items():
        truth = world.value(inc_b)
        found: dict[str, list[float]] = {"ips": [], "snips": [], "dr": []}
        hits = dict.fromkeys(found, 0)
        ess, maxw, clipped = [], [], []
        for rep in range(reps):
            logged = world.log(la, impressions // K, np.random.default_rng(1000 + rep))
            e = estimate(with_reward_model(logged, inc_b, inc_a, b))
            for key, interval in (("ips", e.ips), ("snips", e.snips), ("dr", e.dr)):
                assert interval is not None
                found[key].append(interval.value)
                hits[key] += interval.covers(truth)
            ess.append(e.effective_sample_size)
            maxw.append(e.max_weight)
            clipped.append(e.clipped)
        for key in found:
            print(
                f"{name:<18}{key:>10}{hits[key] / reps:>10.0%}{np.mean(found[key]):>10.4f}"
                f"{truth:>8.4f}{np.mean(ess):>10.0f}{np.max(maxw):>9.0f}{np.mean(clipped):>9.1f}"
            )


def _snips_error(world: World, la: list[Layout], inc_a: np.ndarray, inc_b: np.ndarray) -> None:
    print("\n2. SNIPS mean absolute error against the truth (B without exploration)")
    truth = world.value(inc_b)
    for n, reps in ((10_000, 20), (100_000, 10), (1_000_000, 4)):
        errors = []
        for rep in range(reps):
            logged = world.log(la, n // K, np.random.default_rng(5000 + rep))
            errors.append(abs(estimate(judged(logged, inc_b, inc_a)).snips.value - truth))
        print(f"  {n:>9,} impressions: MAE {np.mean(errors):.4f} ({reps} repetitions)")


def _week(world: World, a: Matrices, eligible: np.ndarray, counts: np.ndarray) -> None:
    print("\n3. a simulated week, every user a list a day (A's model)")
    print(f"{'share':>7}{'coverage':>10}{'true rate':>11}{'observed':>10}")
    week = [date(2026, 11, 23) + timedelta(days=d) for d in range(7)]
    for share in (0.0, 0.1, 0.2):
        layouts = world.layouts(ExplorePolicy(share), a.scores, K)
        shown = np.zeros(eligible.shape[1], dtype=bool)
        positives = slots = 0
        for day in week:
            for user, layout in enumerate(layouts):
                rng = daily_rng(str(user), day)
                drawn = layout.draw(rng)
                shown[drawn.candidates] = True
                p = world.truth[user, drawn.candidates]
                positives += int((rng.random(len(p)) < p).sum())
                slots += len(p)
        coverage = shown.sum() / (counts >= MIN_SUPPORT).sum()
        rate = world.value(world.inclusion(layouts))
        print(f"{share:>7}{coverage:>10.1%}{rate:>11.4f}{positives / slots:>10.4f}")


def _refuses(world: World, a: Matrices, inc_b: np.ndarray) -> None:
    print("\n4. exploration off: the estimators refuse")
    no_explore = world.layouts(ExplorePolicy(0.0), a.scores, K)
    logged = world.log(no_explore, 1000, np.random.default_rng(0))
    try:
        estimate(judged(logged, inc_b, world.inclusion(no_explore)))
        print("  answered (wrong)")
    except NoSupportError as exc:
        print(f"  refused: {exc}")


if __name__ == "__main__":
    main()
