"""MovieLens-25M-sized figures: ingestion, snapshot memory, the nightly retrain, serving.

    .venv/bin/python -m benchmarks.scale_25m all    # or one stage: generate, ingest,
                                                    # ingest-sqlite, snapshot, train, retrain,
                                                    # distributed, ease, als, serve (in order)

`retrain` runs `recsys retrain` as the nightly job does, with default settings (snapshot,
both heads, evaluation with the strong baseline, serving refit, registration) and prints its
wall time, its peak RSS and each stage's seconds; `train` is the same training through the
library, printing every epoch; `als` times implicit's ALS on the same ratings, for scale
(`pip install implicit`); `ease` times the strong baseline alone (`--ease-items`);
`distributed` runs `recsys train --distributed` under torchrun (`--ranks`, default 2) and
prints each rank's peak RSS.

Data: `recsys generate-synthetic --users 162000 --items 59000 --ratings 25000000` (written
once to var/bench/ratings-25m.csv, ~680 MB; 12-20 minutes). PostgreSQL: a database
`recsys_bench25m` on the local server (127.0.0.1:5432), created afresh by `ingest`; SQLite:
var/bench/25m.db (`all` loads the first 2M ratings there: 25M in one transaction take about
half an hour). Each stage runs in its own process, so peak memory (ru_maxrss) is that
stage's alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import create_engine, text

from benchmarks.harness import open_loop, serving
from benchmarks.rawhttp import Call
from recsys.config import RatingScale
from recsys.data.ingest import ingest_csv
from recsys.data.samples import generate_synthetic
from recsys.data.snapshot import read_snapshot
from recsys.store import migrate
from recsys.store.db import make_engine, session_scope
from recsys.train_config import TrainConfig
from recsys.training.runs import train_from_database
from recsys.training.trainer import EpochStats

FOLDER = Path("var/bench")
CSV = FOLDER / "ratings-25m.csv"
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/recsys_bench25m"
SQLITE = f"sqlite:///{FOLDER / '25m.db'}"
# The defaults, as the nightly job uses them: batch sizes follow the data (TrainConfig.sized_for).
SCALE_CONFIG = TrainConfig()


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def generate() -> None:
    if CSV.exists():
        print(f"{CSV} exists ({CSV.stat().st_size / 1e6:.0f} MB)")
        return
    FOLDER.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = generate_synthetic(CSV, n_users=162_000, n_items=59_000, n_ratings=25_000_000, seed=0)
    print(f"generated {n:,} ratings in {time.perf_counter() - t0:.0f} s")


def _fresh_postgres() -> None:
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS recsys_bench25m WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE recsys_bench25m"))
    admin.dispose()


def _head(rows: int) -> Path:
    """The first `rows` ratings of the CSV, as a file of their own."""
    path = FOLDER / f"ratings-first-{rows}.csv"
    with CSV.open() as src, path.open("w") as dst:
        for _, line in zip(range(rows + 1), src, strict=False):
            dst.write(line)
    return path


def ingest(target: str, rows: int | None) -> None:
    if target == "postgres":
        _fresh_postgres()
        url = PG
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(SQLITE.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        url = SQLITE
    migrate.upgrade(url)
    engine = make_engine(url)
    report = ingest_csv(engine, _head(rows) if rows else CSV)
    rate = report.rows / report.seconds
    print(
        f"ingest into {target}: {report.rows:,} rows in {report.seconds:.1f} s = "
        f"{rate:,.0f} rows/s; {report.ratings_after:,} ratings stored; "
        f"peak RSS {peak_rss_gb():.2f} GB"
    )


def snapshot() -> None:
    engine = make_engine(PG)
    t0 = time.perf_counter()
    with session_scope(engine) as s:
        data = read_snapshot(session=s, timestamps=False)
    seconds = time.perf_counter() - t0
    arrays = data.users.nbytes + data.items.nbytes + data.ratings.nbytes
    print(
        f"snapshot from PostgreSQL: {data!r} in {seconds:.1f} s "
        f"({len(data) / seconds:,.0f} ratings/s); arrays {arrays / len(data):.0f} bytes a "
        f"rating ({arrays / 1e9:.2f} GB); peak RSS {peak_rss_gb():.2f} GB"
    )


def train() -> None:
    """`recsys train` as it runs in production, on the PostgreSQL snapshot."""
    engine = make_engine(PG)
    epochs: list[str] = []

    def on_epoch(stats: EpochStats) -> None:
        epochs.append(repr(stats))
        print(f"  {stats}; peak RSS so far {peak_rss_gb():.2f} GB", flush=True)

    print(f"config: {SCALE_CONFIG.model_dump()}; torch threads {torch.get_num_threads()}")
    registered = train_from_database(
        engine,
        FOLDER / "artifacts",
        SCALE_CONFIG,
        RatingScale(),
        on_epoch=on_epoch,
    )
    fitted = registered.fitted
    result = fitted.result
    per_epoch = [h.seconds for h in result.history]
    report = fitted.report
    print(
        f"trained {len(fitted.train):,} ratings: {len(result.history)} epochs, "
        f"{np.mean(per_epoch):.1f} s an epoch (incl. validation), "
        f"{result.samples_per_second:,.0f} samples/s; best epoch {result.best_epoch}; "
        f"fit incl. split and evaluation {fitted.timings}; peak RSS {peak_rss_gb():.2f} GB"
    )
    for name in ("model", "biases", "global_mean"):
        row = report.get(name) if report else None
        print(f"  test RMSE {name}: {row['rmse'] if row else None}")
    print(f"registered {registered.version} (promoted: {registered.promoted})")


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "RECSYS_DATABASE_URL": PG,
        "RECSYS_ARTIFACT_DIR": str(FOLDER / "artifacts"),
        "RECSYS_DEV_MODE": "true",
    }


def retrain() -> None:
    """`recsys retrain` as the nightly job runs it, with default settings: its own output as
    it goes, then wall time, the child's peak RSS and each stage's seconds from `jobs`."""
    recsys = Path(sys.executable).with_name("recsys")
    t0 = time.perf_counter()
    done = subprocess.run([str(recsys), "retrain"], env=_env(), check=False)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"recsys retrain: exit {done.returncode}, {wall:.0f} s wall, peak RSS {peak:.2f} GB")
    engine = create_engine(PG)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, decision, reasons, timings FROM jobs ORDER BY id DESC LIMIT 1")
        ).one()
    print(f"job: {row.status}, {row.decision}; reasons {row.reasons}")
    for stage, seconds in (row.timings or {}).items():
        print(f"  {stage:<16} {seconds:8.1f} s")


def distributed(ranks: int) -> None:
    """`recsys train --distributed` under torchrun with `ranks` processes on this machine,
    default settings: its epoch lines as it goes (rank 0's), then wall time, each rank's
    peak RSS and the run's stage seconds. torchrun gives each process one thread."""
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", str(ranks)]
    cmd += ["-m", "benchmarks.rank_peak", "train", "--distributed", "--no-promote"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env={**_env(), "COLUMNS": "120"}, check=False)
    wall = time.perf_counter() - t0
    print(f"recsys train --distributed, {ranks} ranks: exit {done.returncode}, {wall:.0f} s wall")
    engine = create_engine(PG)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT timings, data_counts FROM training_runs ORDER BY id DESC LIMIT 1")
        ).one()
    print(f"shards (ratings per rank): {(row.data_counts or {}).get('shards')}")
    for stage, seconds in (row.timings or {}).items():
        print(f"  {stage:<16} {seconds:8.1f} s")


def ease(max_items: int) -> None:
    """The strong baseline alone: EASE on the `max_items` most-rated items."""
    from recsys.evaluation.ease import Ease

    engine = make_engine(PG)
    with session_scope(engine) as s:
        data = read_snapshot(session=s, timestamps=False)
    before = peak_rss_gb()
    t0 = time.perf_counter()
    model = Ease(data, max_items=max_items)
    print(
        f"{model.description}: {time.perf_counter() - t0:.1f} s; peak RSS {before:.2f} GB "
        f"with the snapshot, {peak_rss_gb():.2f} GB after"
    )


def als() -> None:
    """implicit's ALS (64 factors, its defaults otherwise) on the same ratings, for scale."""
    from implicit.cpu.als import AlternatingLeastSquares  # benchmarks only: pip install implicit
    from scipy.sparse import csr_matrix

    engine = make_engine(PG)
    with session_scope(engine) as s:
        data = read_snapshot(session=s, timestamps=False)
    x = csr_matrix(
        (np.ones(len(data), dtype=np.float32), (data.users, data.items)),
        shape=(data.n_users, data.n_items),
    )
    model = AlternatingLeastSquares(factors=64, iterations=3, random_state=0)
    t0 = time.perf_counter()
    model.fit(x, show_progress=False)
    per_iteration = (time.perf_counter() - t0) / 3
    print(f"implicit ALS on {len(data):,} ratings: {per_iteration:.1f} s an iteration (64 factors)")


def serve(rate: float, seconds: float) -> None:
    env = _env()
    rng = np.random.default_rng(0)
    users = rng.integers(0, 162_000, int(rate * seconds))
    with serving(env) as base:

        def recommend(i: int) -> Call:
            return Call.get(f"/v1/users/{users[i]}/recommendations", k=10)

        print(f"warm-up: {open_loop(base, rate, 3, recommend).summary()}")
        result = open_loop(base, rate, seconds, recommend)
        print(f"recommendations at {rate:.0f}/s, 25M model: {result.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    stages = [
        *("generate", "ingest", "ingest-sqlite", "snapshot", "train", "retrain", "distributed"),
        *("ease", "als"),
        "serve",
        "all",
    ]
    parser.add_argument("stage", choices=stages)
    parser.add_argument(
        "--rows", type=int, help="ingest only the first ROWS ratings (SQLite takes ~30 min for all)"
    )
    parser.add_argument("--ease-items", type=int, default=4_000, help="for the ease stage")
    parser.add_argument("--ranks", type=int, default=2, help="for the distributed stage")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}", flush=True)
    if args.stage == "all":
        steps = (
            *("generate", "ingest", "ingest-sqlite", "snapshot", "retrain", "distributed"),
            *("ease", "als"),
        )
        for stage in (*steps, "serve"):
            # A process per stage: each peak RSS is that stage's own.
            # SQLite takes the first 2M ratings: all 25M in one transaction take ~30 min.
            extra = ["--rows", "2000000"] if stage == "ingest-sqlite" else []
            cmd = [sys.executable, "-m", "benchmarks.scale_25m", stage, *extra]
            subprocess.run(cmd, check=True)
        return
    if args.stage == "generate":
        generate()
    elif args.stage == "ingest":
        ingest("postgres", args.rows)
    elif args.stage == "ingest-sqlite":
        ingest("sqlite", args.rows)
    elif args.stage == "snapshot":
        snapshot()
    elif args.stage == "train":
        train()
    elif args.stage == "retrain":
        retrain()
    elif args.stage == "distributed":
        distributed(args.ranks)
    elif args.stage == "ease":
        ease(args.ease_items)
    elif args.stage == "als":
        als()
    else:
        serve(args.rate, args.seconds)


if __name__ == "__main__":
    main()
