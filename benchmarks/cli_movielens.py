"""`recsys train` and `recsys predict` on MovieLens as a user runs them: whole commands.

    .venv/bin/python -m benchmarks.cli_movielens [--seeds 42 7 123 1 2]

For each seed, a random 90/10 split of ml-latest-small: the 90 % (with the catalog's titles
and genres) is ingested into a fresh SQLite database with `recsys ingest`, `recsys train`
runs with default settings, and `recsys predict` predicts the other 10 %. Prints the wall
time of `recsys train` as a whole command (imports, snapshot, both heads, evaluation with
EASE, serving refit, registration), its CPU seconds (user + system: they move less than the
wall time when a VM's neighbours are busy) and the RMSE of the served predictions, each seed
and their mean; and the wall time of `recsys --help` (median of 5).

    .venv/bin/python -m benchmarks.cli_movielens --against OTHER/.venv/bin/recsys

also times another install's `recsys train` (a checkout of an earlier commit) on the same
ingested database, seed by seed, alternating which goes first: the VM's speed drifts by a
third within an hour, so runs minutes apart do not compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data import samples

RECSYS = str(Path(sys.executable).with_name("recsys"))


def _run(args: list[str], env: dict[str, str]) -> float:
    return _timed(args, env)[0]


def _timed(args: list[str], env: dict[str, str], recsys: str = RECSYS) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one command. The CPU seconds move
    less than the wall time when the VM's neighbours are busy."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [recsys, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def one_split(
    seed: int, folder: Path, against: str | None = None
) -> tuple[float, float, float, tuple[float, float] | None]:
    """`recsys train`'s wall and CPU seconds and the served RMSE on seed's split; with
    `against`, that script's `recsys train` wall and CPU seconds on the same database."""
    sample = samples.movielens()
    ratings = sample.ratings
    test = np.random.default_rng(seed).random(len(ratings)) < 0.1
    ratings[~test].to_csv(folder / "train.csv", index=False)
    ratings[test].to_csv(folder / "test.csv", index=False)
    sample.items.to_csv(folder / "items.csv", index=False)
    ingested = folder / "ingested"
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": f"sqlite:///{ingested / 'recsys.db'}",
        "RECSYS_ARTIFACT_DIR": str(folder / "artifacts"),
    }
    ingested.mkdir()
    _run(["db", "upgrade"], env)
    _run(["ingest", str(folder / "train.csv"), "--items", str(folder / "items.csv")], env)
    other = None
    if against is not None and seed % 2:  # alternate which goes first
        other = _timed(["train"], _fresh(ingested, folder / "other", env), against)
    ours = _fresh(ingested, folder / "ours", env)
    train_s, train_cpu = _timed(["train"], ours)
    if against is not None and other is None:
        other = _timed(["train"], _fresh(ingested, folder / "other", env), against)
    _run(["predict", str(folder / "test.csv"), "-o", str(folder / "predictions.csv")], ours)
    predicted = pd.read_csv(folder / "predictions.csv")["prediction"].to_numpy()
    truth = ratings[test]["rating"].astype(float).to_numpy()
    rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    return train_s, train_cpu, rmse, other


def _fresh(ingested: Path, folder: Path, env: dict[str, str]) -> dict[str, str]:
    """A copy of the ingested database in `folder`, and the environment that trains on it."""
    shutil.copytree(ingested, folder)
    return {
        **env,
        "RECSYS_DATABASE_URL": f"sqlite:///{folder / 'recsys.db'}",
        "RECSYS_ARTIFACT_DIR": str(folder / "artifacts"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123, 1, 2])
    parser.add_argument("--against", help="another install's recsys script, timed beside")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores", flush=True)
    helps = [_run(["--help"], dict(os.environ)) for _ in range(5)]
    print(f"recsys --help: {statistics.median(helps):.2f} s (median of 5)", flush=True)
    walls, cpus, rmses, others = [], [], [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu, rmse, other = one_split(seed, Path(tmp), args.against)
        walls.append(wall)
        cpus.append(cpu)
        rmses.append(rmse)
        beside = ""
        if other is not None:
            others.append(other)
            beside = f"; against {other[0]:.1f} s ({other[1]:.1f} CPU s)"
        print(
            f"seed {seed}: recsys train {wall:.1f} s ({cpu:.1f} CPU s); served RMSE "
            f"{rmse:.4f}{beside}",
            flush=True,
        )
    print(
        f"mean of {len(args.seeds)}: recsys train {np.mean(walls):.1f} s "
        f"(range {min(walls):.1f}-{max(walls):.1f}; {np.mean(cpus):.1f} CPU s); "
        f"served RMSE {np.mean(rmses):.4f}"
    )
    if others:
        other_walls = [w for w, _ in others]
        print(
            f"against {args.against}: {np.mean(other_walls):.1f} s "
            f"(range {min(other_walls):.1f}-{max(other_walls):.1f}; "
            f"{np.mean([c for _, c in others]):.1f} CPU s)"
        )


if __name__ == "__main__":
    main()
