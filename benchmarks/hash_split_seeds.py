"""The ranking head on `recsys train`'s own protocol, seed by seed: the MovieLens sample loaded
into a SQLite store, read back by the training snapshot (the database's row order, as
`recsys train` sees it), the default hash split, one fit per training seed and config.

    .venv/bin/python -m benchmarks.hash_split_seeds [--seeds 42 1 2]
        [--configs '[{}, {"rank_input_dropout": 0.75}]']

A head's NDCG@10 moves with its training seed by more than its margin over EASE, so one run
says little; this prints each seed's test and best validation NDCG@10, kept epoch and fit
time (without EASE and the refit on all ratings, which do not change the test figures), and
EASE on the same test pairs once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.snapshot import training_snapshot
from recsys.store.db import make_engine
from recsys.train_config import TrainConfig
from recsys.training.pipeline import fit


def _snapshot(folder: Path) -> Any:
    url = f"sqlite:///{folder / 'seeds.db'}"
    recsys = str(Path(sys.executable).parent / "recsys")
    env = {**os.environ, "RECSYS_DATABASE_URL": url}
    for args in (("db", "upgrade"), ("load-sample", "movielens")):
        subprocess.run([recsys, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    engine = make_engine(url)
    try:
        return training_snapshot(engine, "hash")
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--configs", default='[{}, {"rank_input_dropout": 0.75}]')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = _snapshot(Path(tmp))
    ease = fit(data, TrainConfig(ranking=False, serve_refit=False)).report
    assert ease is not None
    print(f"EASE on the hash split's test pairs: NDCG@10 {ease['ease']['ndcg@10']:.4f}")
    for overrides in json.loads(args.configs):
        tests, vals, times = [], [], []
        for seed in args.seeds:
            values = {"ease_max_items": 0, "serve_refit": False, "seed": seed, **overrides}
            t0 = time.perf_counter()
            fitted = fit(data, TrainConfig(**values))
            times.append(time.perf_counter() - t0)
            report = fitted.report
            assert report is not None
            record = fitted.recommender.card.ranking
            assert record is not None
            tests.append(report["model"]["ndcg@10"] or 0.0)
            vals.append(max(h["val_ndcg"] or 0.0 for h in record.history))
            print(
                f"{json.dumps(overrides)} seed {seed}: test NDCG@10 {tests[-1]:.4f}, best "
                f"validation {vals[-1]:.4f} (epoch {record.best_epoch}), fit {times[-1]:.1f} s",
                flush=True,
            )
        print(
            f"== {json.dumps(overrides)}: test mean {np.mean(tests):.4f}, min {min(tests):.4f}; "
            f"validation mean {np.mean(vals):.4f}; fit mean {np.mean(times):.1f} s"
        )


if __name__ == "__main__":
    main()
