"""The CLI through its real entry point, against a real SQLite file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

RECSYS = str(Path(sys.executable).parent / "recsys")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "RECSYS_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "COLUMNS": "200",
    }


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([RECSYS, *args], env=env, capture_output=True, text=True, timeout=240)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_full_cli_flow(env: dict[str, str], tmp_path: Path) -> None:
    csv = tmp_path / "ratings.csv"
    run(env, "db", "upgrade")
    run(
        env,
        "generate-synthetic",
        str(csv),
        "--users",
        "200",
        "--items",
        "150",
        "--ratings",
        "6000",
        "--seed",
        "1",
    )
    out = run(env, "ingest", str(csv)).stdout
    assert "6,000 rows valid and applied" in out

    trained = run(env, "train", "--epochs", "4", "--factors", "8").stdout
    assert "best epoch" in trained and "rmse" in trained and "most_popular" in trained
    assert "model v" in trained
    # The final model is trained again on training + validation data, unless told not to.
    assert re.search(r"refit on training \+ validation data \([\d,]+ ratings\)", trained)
    once = run(env, "train", "--epochs", "2", "--factors", "8", "--no-refit", "--no-promote")
    assert "best epoch" in once.stdout and "refit" not in once.stdout

    listed = run(env, "models", "list").stdout
    assert "production" in listed or "rejected" in listed
    # Registry actions from the command line land in the audit trail with their reason.
    run(env, "models", "promote", "latest", "--reason", "second run checked by hand")
    trail = run(env, "models", "history").stdout
    assert "promote" in trail and "second run checked by hand" in trail and "cli (" in trail

    evaluated = run(env, "evaluate", "--recompute").stdout
    assert "global_mean" in evaluated and "ndcg@10" in evaluated

    rec = run(env, "recommend", "0", "-k", "3").stdout
    assert "top 3 for user 0" in rec
    cold = run(env, "recommend", "stranger", "-k", "3").stdout
    assert "cold-start" in cold

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n0,1\nstranger,1\n0,unknown-item\n")
    preds = tmp_path / "preds.csv"
    run(env, "predict", str(pairs), "--output", str(preds))
    lines = preds.read_text().strip().splitlines()
    assert lines[0] == "user_id,item_id,prediction" and len(lines) == 4
    assert all(0.5 <= float(line.split(",")[2]) <= 5.0 for line in lines[1:])

    inspected = run(env, "inspect", "--item", "1", "--min-support", "1").stdout
    assert "highest item bias" in inspected and "nearest to item 1" in inspected


def test_cli_errors_are_messages_not_tracebacks(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,rating\nu,i,3\nu,i,eleven\n")
    no_schema = run(env, "ingest", str(bad), ok=False)
    assert no_schema.returncode == 1 and "recsys db upgrade" in no_schema.stderr
    run(env, "db", "upgrade")
    proc = run(env, "ingest", str(bad), ok=False)
    assert proc.returncode == 1
    assert "line 3: rating 'eleven' is not a number" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Cells that look like Rich markup are printed as they are, not parsed.
    bad.write_text("user_id,item_id,rating\n[/x],[bold]i,[red]3\n")
    proc = run(env, "ingest", str(bad), ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "rating '[red]3' is not a number" in proc.stderr
    no_model = run(env, "recommend", "u", ok=False)
    assert no_model.returncode == 1 and "recsys train" in no_model.stderr
    assert run(env, "train", "--help").returncode == 0


def test_the_command_line_starts_without_torch_or_pandas() -> None:
    """They take ~2 s to import; `recsys --help` and the commands that need neither must not
    pay for them (benchmarks/cli_start.py times it)."""
    probe = "import sys, recsys.cli; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
