"""`recsys train --distributed` under torchrun: two processes, each on its shard of users, give
a model as good as one process does, both heads trained across the ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from recsys import registry

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_two_ranks_match_one_process(db_url: str, engine: Engine, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": db_url,
        "RECSYS_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "COLUMNS": "200",
        # EASE is not what this test compares, and its baseline row took a third of each run.
        "RECSYS_EASE_MAX_ITEMS": "0",
    }
    recsys = str(BIN / "recsys")
    # Both runs with the same shorter schedule of the ranking head (the default's 40 epochs
    # took most of each run): what is compared is the two processes against one.
    short = ("--rank-epochs", "12")
    _run(env, recsys, "load-sample", "movielens")
    _run(env, recsys, "train", "--no-promote", *short)
    out = _run(
        env,
        str(BIN / "torchrun"),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "recsys.cli",
        "train",
        "--distributed",
        "--no-promote",
        *short,
    )
    assert out.count("best epoch") == 1  # rank 0 alone reports

    distributed, single = registry.list_versions(engine, limit=2)
    runs = [registry.get_run(engine, v["training_run_id"]) for v in (distributed, single)]
    assert runs[0] is not None and runs[1] is not None
    shards = runs[0]["data_counts"]["shards"]
    total = runs[1]["data_counts"]["ratings"]
    # Each rank read about half of the ratings, and together all of them.
    assert len(shards) == 2 and sum(shards) == total == runs[0]["data_counts"]["ratings"]
    assert all(0.45 * total < n < 0.55 * total for n in shards)
    assert runs[0]["timings"]["ranks"] == 2

    rmse = [v["metrics"]["report"]["model"]["rmse"] for v in (distributed, single)]
    ndcg = [v["metrics"]["report"]["model"]["ndcg@10"] for v in (distributed, single)]
    biases = distributed["metrics"]["report"]["biases"]["rmse"]
    # Same test pairs (hash split), same global batch: the same quality within noise.
    assert abs(rmse[0] - rmse[1]) < 0.01, rmse
    assert abs(ndcg[0] - ndcg[1]) <= 0.02 * ndcg[1], ndcg
    assert rmse[0] < biases - 0.02, (rmse, biases)
    # The ranking head is sharded by user, its item side summed over the ranks, with one
    # process's batches: its learning curve is the single process's, up to float sums.
    assert all(len(v["metrics"]["ranking"]["history"]) <= 12 for v in (distributed, single))
    curves = [v["metrics"]["ranking"]["history"][:5] for v in (distributed, single)]
    for shared, alone in zip(*curves, strict=True):
        assert shared["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-3)
        assert shared["val_ndcg"] == pytest.approx(alone["val_ndcg"], abs=2e-3)
    # The same steps as `recsys train`: the model that serves is refit on every rating.
    for run in runs:
        assert run is not None and run["timings"]["serve_refit_s"] > 0, run


def test_distributed_outside_torchrun_says_how_to_run_it(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "RECSYS_DATABASE_URL": db_url, "COLUMNS": "200"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(
        [str(BIN / "recsys"), "train", "--distributed"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "torchrun --nproc-per-node" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
