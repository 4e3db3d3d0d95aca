"""`recsys predict`, `recsys recommend` and `recsys inspect`: a registered model's answers,
offline, without the service."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from recsys.cli_console import db_engine, out
from recsys.config import get_settings
from recsys.errors import RecsysError

if TYPE_CHECKING:
    from recsys.model.recommender import Recommender
    from recsys.model.scored import Scored


def _load(version: str | None) -> Recommender:
    from recsys import registry
    from recsys.model import artifact

    row = registry.resolve(db_engine(), version)
    return artifact.load(Path(row["artifact_path"]), row["checksum"])


def _titles(ids: list[str]) -> dict[str, Any]:
    from recsys.store import queries
    from recsys.store.db import session_scope

    with session_scope(db_engine()) as s:
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
        support = get_settings().cold_start_min_support
        rows = lists.cold_start(ListRequest(k, min_support=support))
        title = f"user {user} is unknown: cold-start top {k}"
    _print_scored(title, rows, "ranking score")


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
    min_support = min_support or get_settings().similar_min_support
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
