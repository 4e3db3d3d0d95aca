"""The CLI through its real entry point, against a real SQLite file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

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
    # Named by the system's account, never by what LOGNAME or USER claim.
    spoofed = {**env, "LOGNAME": "operator token", "USER": "operator token"}
    run(spoofed, "models", "promote", "latest", "--reason", "second run checked by hand")
    trail = run(env, "models", "history").stdout
    assert "promote" in trail and "second run checked by hand" in trail and "cli (" in trail
    assert "operator token" not in trail
    # Or by the deployment.
    run(env, "train", "--epochs", "1", "--factors", "4", "--no-promote")
    named = {**env, "RECSYS_CLI_ACTOR": "deploy-bot"}
    run(named, "models", "reject", "latest", "--reason", "not this one")
    assert "cli (deploy-bot)" in run(env, "models", "history").stdout

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
    # A command run where there is no database says which one and leaves no empty file.
    database = Path(env["RECSYS_DATABASE_URL"].removeprefix("sqlite:///"))
    for command in (["jobs", "list"], ["models", "list"], ["train"]):
        missing = run(env, *command, ok=False)
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert f"there is no database at {database}" in " ".join(missing.stderr.split())
    assert not database.exists()
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


def test_out_of_range_input_and_unwritable_folders_are_messages(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Each of these printed a traceback: dates beyond pandas' calendar in a CSV, a window
    of 99999999999 days (a timedelta overflow), and a training run whose artifact folder
    cannot be written (a full disk does the same), which is recorded as failed."""
    run(env, "db", "upgrade")
    dates = tmp_path / "dates.csv"
    dates.write_text(
        "user_id,item_id,rating,timestamp\nu,i,3,2020-01-01\nu,j,3,9999-12-31T00:00:00Z\n"
        "u,k,3,1600-01-01\n"
    )
    proc = run(env, "ingest", str(dates), ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "line 3: timestamp '9999-12-31T00:00:00Z' lies in the future" in proc.stderr
    assert "line 4: timestamp '1600-01-01' lies before 1970" in proc.stderr

    csv = tmp_path / "ratings.csv"
    run(env, "generate-synthetic", str(csv), "--users", "60", "--items", "40", "--ratings", "900")
    run(env, "ingest", str(csv))
    online = run(env, "models", "online", "--hours", "1e300")
    assert "Traceback" not in online.stderr
    since = run(env, "evaluate", "--off-policy", "production", "--since", "99999999999d", ok=False)
    assert "Traceback" not in since.stderr and "OverflowError" not in since.stderr

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    unwritable = {**env, "RECSYS_ARTIFACT_DIR": str(blocked / "artifacts")}
    proc = run(unwritable, "train", "--epochs", "1", "--factors", "4", ok=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Not a directory" in proc.stderr, proc.stderr
    engine = create_engine(env["RECSYS_DATABASE_URL"])
    with engine.connect() as conn:
        status, error = conn.execute(
            text("SELECT status, error FROM training_runs ORDER BY id DESC LIMIT 1")
        ).one()
    engine.dispose()
    assert status == "failed" and "Not a directory" in error


def test_the_command_line_starts_without_torch_pandas_or_sqlalchemy() -> None:
    """They take ~2 s to import; `recsys --help` and the commands that need none of them must
    not pay for them (benchmarks/cli_start.py times it)."""
    heavy = "{'torch', 'pandas', 'sqlalchemy'}"
    probe = f"import sys, recsys.cli; print(sorted({heavy} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_a_database_without_its_schema_is_named_with_the_fix(
    env: dict[str, str], tmp_path: Path
) -> None:
    create_engine(env["RECSYS_DATABASE_URL"]).connect().close()  # the file, no tables
    proc = run(env, "models", "list", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "database error: no such table" in proc.stderr
    assert "is the schema missing? run: recsys db upgrade" in proc.stderr
