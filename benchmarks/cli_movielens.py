"""`recsys train` and `recsys predict` on MovieLens as a user runs them: whole commands.

    .venv/bin/python -m benchmarks.cli_movielens [--seeds 42 7 123 1 2]

For each seed, a random 90/10 split of ml-latest-small: the 90 % (with the catalog's titles
and genres) is ingested into a fresh SQLite database with `recsys ingest`, `recsys train`
runs with default settings, and `recsys predict` predicts the other 10 %. Prints the wall
time of `recsys train` as a whole command (imports, snapshot, both heads, evaluation with
EASE, serving refit, registration), its CPU seconds (user + system: they move less than the
wall time when a VM's neighbours are busy) and the RMSE of the served predictions, each seed
and their mean; and the wall time of `recsys --help` (median of 5).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one command. The CPU seconds move
    less than the wall time when the VM's neighbours are busy."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [RECSYS, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def one_split(seed: int, folder: Path) -> tuple[float, float, float]:
    sample = samples.movielens()
    ratings = sample.ratings
    test = np.random.default_rng(seed).random(len(ratings)) < 0.1
    ratings[~test].to_csv(folder / "train.csv", index=False)
    ratings[test].to_csv(folder / "test.csv", index=False)
    sample.items.to_csv(folder / "items.csv", index=False)
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": f"sqlite:///{folder / 'recsys.db'}",
        "RECSYS_ARTIFACT_DIR": str(folder / "artifacts"),
    }
    _run(["db", "upgrade"], env)
    _run(["ingest", str(folder / "train.csv"), "--items", str(folder / "items.csv")], env)
    train_s, train_cpu = _timed(["train"], env)
    _run(["predict", str(folder / "test.csv"), "-o", str(folder / "predictions.csv")], env)
    predicted = pd.read_csv(folder / "predictions.csv")["prediction"].to_numpy()
    truth = ratings[test]["rating"].astype(float).to_numpy()
    return train_s, train_cpu, float(np.sqrt(np.mean((predicted - truth) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123, 1, 2])
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores", flush=True)
    helps = [_run(["--help"], dict(os.environ)) for _ in range(5)]
    print(f"recsys --help: {statistics.median(helps):.2f} s (median of 5)", flush=True)
    walls, cpus, rmses = [], [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu, rmse = one_split(seed, Path(tmp))
        walls.append(wall)
        cpus.append(cpu)
        rmses.append(rmse)
        print(
            f"seed {seed}: recsys train {wall:.1f} s ({cpu:.1f} CPU s); served RMSE {rmse:.4f}",
            flush=True,
        )
    print(
        f"mean of {len(args.seeds)}: recsys train {np.mean(walls):.1f} s "
        f"(range {min(walls):.1f}-{max(walls):.1f}; {np.mean(cpus):.1f} CPU s); "
        f"served RMSE {np.mean(rmses):.4f}"
    )


if __name__ == "__main__":
    main()
