"""The `recsys` command line. Every command reads the same `Settings` (RECSYS_* variables)."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli_console import db_engine, err, out, tagged
from recsys.cli_data import generate_synthetic, ingest, load_sample
from recsys.cli_ops import retrain, schedule, simulate_traffic
from recsys.cli_registry import jobs_app, keys_app, models_app
from recsys.cli_scoring import inspect, predict, recommend
from recsys.config import Settings, get_settings, train_config
from recsys.errors import ConfigError, RecsysError
from recsys.train_config import TrainConfig

if TYPE_CHECKING:
    from recsys.evaluation.report import Report
    from recsys.model.recommender import Recommender

# The modules that need torch, pandas, alembic or sqlalchemy are imported in the commands
# that use them: `recsys --help` starts in a fraction of the ~2 s they take to import.

app = typer.Typer(
    help="Collaborative-filtering recommender: ingest, train, evaluate, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(jobs_app, name="jobs")
app.add_typer(keys_app, name="keys")


def _settings() -> Settings:
    return get_settings()


# --- database --------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from recsys.store import migrate
    from recsys.store.db import make_engine

    url = _settings().database_url
    make_engine(url).dispose()  # creates the folder of a SQLite file
    migrate.upgrade(url, revision)
    out.print(f"database at {url} is at revision {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the revision the database is at."""
    from recsys.store import migrate

    migrate.current(_settings().database_url)


# --- data ------------------------------------------------------------------------------------


# --- training and evaluation -------------------------------------------------------------------


_RefitOption = Annotated[
    bool | None,
    typer.Option(
        "--refit/--no-refit",
        help="Train again on training + validation data for the best number of epochs "
        "(default on; about twice the training time).",
    ),
]
_PromoteOption = Annotated[
    bool, typer.Option(help="Put the model in production if it beats the baselines.")
]
_DistributedOption = Annotated[
    bool,
    typer.Option(
        help="Data-parallel across the processes of torchrun (each reads its shard): "
        "torchrun --nproc-per-node N -m recsys.cli train --distributed"
    ),
]


def train(
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs.")] = None,
    rank_epochs: Annotated[
        int | None, typer.Option(min=1, help="Maximum epochs of the ranking head.")
    ] = None,
    factors: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    lr: Annotated[float | None, typer.Option(min=0.0)] = None,
    factor_l2: Annotated[float | None, typer.Option(min=0.0)] = None,
    split: Annotated[str | None, typer.Option(help="hash (default), random or time")] = None,
    seed: int | None = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    refit: _RefitOption = None,
    promote: _PromoteOption = True,
    distributed: _DistributedOption = False,
) -> None:
    """Train DotProductBias on the ratings in the database, evaluate it, register it."""
    from recsys.cli_progress import print_training, training_progress
    from recsys.training.runs import train_from_database
    from recsys.training.sharded import train_distributed

    s = _settings()
    overrides = {
        "epochs": epochs,
        "rank_epochs": rank_epochs,
        "n_factors": factors,
        "batch_size": batch_size,
        "lr": lr,
        "factor_l2": factor_l2,
        "split": split,
        "seed": seed,
        "device": device,
        "refit": refit,
    }
    config = train_config(s, **overrides)
    # Under torchrun only rank 0 shows progress and the report.
    quiet = distributed and os.environ.get("RANK", "0") != "0"
    with training_progress(err, config, quiet=quiet) as progress:
        run = train_distributed if distributed else train_from_database
        reg = run(
            db_engine(),
            s.artifact_dir,
            config,
            s.rating_scale,
            promote=promote,
            settings=s,
            on_epoch=progress.on_epoch,
            on_step=progress.on_step,
            on_rank_epoch=progress.on_rank_epoch,
            on_stage=progress.on_stage,
        )
    if reg is not None:  # a distributed rank other than 0 has none: rank 0 reports
        print_training(reg, config.top_k)


def evaluate(
    version: Annotated[str | None, typer.Option(help="Default: production, else newest.")] = None,
    recompute: Annotated[bool, typer.Option(help="Re-evaluate on the current database.")] = False,
    off_policy: Annotated[
        str | None,
        typer.Option(
            "--off-policy",
            metavar="VERSION",
            help="Instead: estimate VERSION's positive feedback per slot from logged lists "
            "and feedback (IPS, SNIPS, DR), as if it had served them.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="With --off-policy: traffic since a time (ISO 8601) or for 36h, 7d."),
    ] = None,
    explore: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.99,
            help="With --off-policy: the exploration share VERSION would serve with "
            "(default RECSYS_EXPLORE_SHARE).",
        ),
    ] = None,
) -> None:
    """Print a model's evaluation next to the baselines (global mean, biases, most popular,
    EASE); for a model refit on all ratings, its evaluated twin's. With --off-policy, judge a
    version on the lists the service logged instead (needs RECSYS_EXPLORE_SHARE > 0 while
    they were served)."""
    if off_policy is not None:
        from recsys.cli_offpolicy import off_policy as judge_off_policy

        judge_off_policy(_settings(), off_policy, since, explore, out)
        return
    from recsys import registry
    from recsys.evaluation.report import Report, format_report
    from recsys.model import artifact

    row = registry.resolve(db_engine(), version)
    folder = Path(row["artifact_path"])
    # The evaluated twin: the served model was refit on the holdout too.
    rec = artifact.load_twin(folder, artifact.load(folder, row["checksum"]))
    stored = rec.card.metrics
    report = _evaluate_again(rec) if recompute or stored is None else Report.from_json(stored)
    out.print(f"model {row['version']} ({row['status']})")
    out.print(format_report(report))


def _evaluate_again(rec: Recommender) -> Report:
    """`rec` evaluated on the test holdout of the database as it is now, split as it was."""
    from recsys.data.snapshot import training_snapshot
    from recsys.data.split import HASH_HOLDOUT_SEED, holdout
    from recsys.evaluation.remap import remap
    from recsys.evaluation.report import evaluate

    cfg = rec.card.config or TrainConfig()
    data = training_snapshot(db_engine(), cfg.split)
    if data.user_vocab != rec.user_vocab or data.item_vocab != rec.item_vocab:
        err.print(
            tagged(
                "note:",
                "yellow",
                "the data changed since this model was trained; "
                "held-out ratings may include some it learned from",
            )
        )
    test_seed = HASH_HOLDOUT_SEED if cfg.split == "hash" else cfg.seed
    train_part, test = holdout(data, cfg.test_fraction or 0.1, method=cfg.split, seed=test_seed)
    return evaluate(
        remap(rec, train_part), train_part, test, threshold=cfg.liked_threshold, k=cfg.top_k,
        seed=cfg.seed,
    )  # fmt: skip


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the REST API (docs at /docs) for the production model of the configured store."""
    import uvicorn  # the web stack loads only for this command

    settings = _settings()
    problems = settings.serving_problems()
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems))
    if settings.dev_mode:
        err.print(
            tagged("development mode:", "yellow", "writes need no client key; never in production")
        )
    out.print(
        f"serving {settings.database_url} on http://{host}:{port} (docs: /docs), "
        f"{workers} worker(s)",
        highlight=False,
    )
    if workers > 1:
        _share_metrics_between_workers()
    # An import string, not an object: each worker process builds its own app (and this
    # library never imports the web layer).
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


def _share_metrics_between_workers() -> None:
    """prometheus_client's multiprocess mode: the workers (which inherit the environment)
    write their metrics under one folder of this server's own, so that nothing left by an
    earlier run or another server on the machine is added in; removed when serving stops."""
    folder = tempfile.mkdtemp(prefix="recsys-metrics-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


# The commands, in the order `recsys --help` lists them: a day's work from data to serving,
# then the operator's.
for name, command in (
    ("ingest", ingest),
    ("load-sample", load_sample),
    ("generate-synthetic", generate_synthetic),
    ("train", train),
    ("evaluate", evaluate),
    ("predict", predict),
    ("recommend", recommend),
    ("inspect", inspect),
    ("serve", serve),
    ("retrain", retrain),
    ("schedule", schedule),
    ("simulate-traffic", simulate_traffic),
):
    app.command(name)(command)


GC_FIRST_GENERATION = 100_000
"""Allocations between the cyclic collector's young collections in a command (Python's
default is 700)."""


def main() -> None:
    """Entry point of the `recsys` command."""
    # A command's objects are nearly all freed by reference counting; what the cyclic
    # collector costs is its walks over the ~1M objects that importing torch leaves: 0.3 s of
    # the imports at the default threshold, and 0.5 s of a final collection at shutdown,
    # which nothing needs since the process is ending (benchmarks.cli_movielens). Cycles are
    # still collected, less often; at the end the survivors are frozen out of that last walk.
    gc.set_threshold(GC_FIRST_GENERATION, *gc.get_threshold()[1:])
    try:
        _run()
    finally:
        gc.freeze()


def _run() -> None:
    """The command, with known errors turned into a message and exit status 1, never a
    traceback."""
    try:
        app()
    except RecsysError as exc:
        err.print(tagged("error:", "red", str(exc)))
        sys.exit(1)
    except OSError as exc:
        # A full disk, a folder it may not write: what and where, not a stack of frames
        # (a training run that fails so is recorded as failed before this).
        where = f": {exc.filename}" if exc.filename else ""
        err.print(tagged("error:", "red", f"{exc.strerror or exc}{where}"))
        sys.exit(1)
    except Exception as exc:
        said = _database_error(exc)
        if said is None:
            raise
        err.print(tagged("database error:", "red", said))
        sys.exit(1)


def _database_error(exc: Exception) -> str | None:
    """What a database's error (sqlalchemy's OperationalError or ProgrammingError) says, with
    a hint where the schema is missing; None for any other error. sqlalchemy is imported by
    the commands that use a database, so where it was not, the error cannot be one."""
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, (errors.OperationalError, errors.ProgrammingError)):
        return None
    from recsys.store.db import shown_url

    orig = getattr(exc, "orig", None)
    msg = str(orig if orig is not None else exc).strip()
    missing = "no such table" in msg or "does not exist" in msg
    url = shown_url(get_settings().database_url)
    return msg + (f" in {url} (is the schema missing? run: recsys db upgrade)" if missing else "")


if __name__ == "__main__":
    main()
