"""Items added after training, recommended from their genres: do the users who rated them
score them above those who did not?

    .venv/bin/python -m benchmarks.new_items [--seed 0] [--share 0.1]

A random 10 % of MovieLens's films are withheld with all their ratings. The rest is ingested
into a fresh SQLite database and trained as `recsys train` trains it (default settings, the
served model refit on all ratings). The withheld films are then added with their genres
(`recsys.model.new_items`, what every replica of the service does when the catalog gains
items). For each withheld film rated by at least one trained user: the AUC of its raters
against every other trained user, by

- model: log(n_u) + log p(i | u), the user's activity times the probability that their list's
  softmax (the served ranking score over every listable item) puts on the film;
- model, no activity: log p(i | u) alone;
- genre-only: log(n_u) + log of the largest share of the user's ratings in one of the film's
  genres (how many films of its genres they rated);
- activity only: n_u (how many films the user rated; no knowledge of the film at all).

The mean over films, then the nearest films of the withheld Horror films (`similar`,
the service's default least support): how many of ten are Horror. Random is 0.5 AUC.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from recsys.config import RatingScale, Settings, train_config
from recsys.data import samples
from recsys.data.genres import split_genres
from recsys.data.ingest import ingest_frames
from recsys.model.new_items import addable, with_new_items
from recsys.model.recommender import Recommender
from recsys.model.similar import SimilarItems
from recsys.store import migrate
from recsys.store.db import make_engine
from recsys.training.runs import train_from_database


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC of the positives' scores against the rest (ties count half)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_without(withheld: set[str], folder: Path) -> Recommender:
    sample = samples.movielens()
    ratings = sample.ratings[~sample.ratings["item_id"].astype(str).isin(withheld)]
    items = sample.items[~sample.items["item_id"].astype(str).isin(withheld)]
    url = f"sqlite:///{folder / 'recsys.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    ingest_frames(engine, [ratings], source="bench", scale=RatingScale(), item_frames=[items])
    settings = Settings(database_url=url)
    done = train_from_database(engine, folder / "artifacts", train_config(settings), RatingScale())
    engine.dispose()
    return done.fitted.deployed


def score_table(rec: Recommender, users: np.ndarray) -> np.ndarray:
    """log p(i | u) of every usable item by the served ranking score's softmax."""
    scores = rec.rank_scores(users).numpy().astype(np.float64)
    top = scores.max(axis=1, keepdims=True)
    logsum = top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
    table: np.ndarray = scores - logsum
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share", type=float, default=0.1)
    args = parser.parse_args()
    sample = samples.movielens()
    genres = {
        str(i): split_genres(g)
        for i, g in zip(sample.items["item_id"], sample.items["genres"], strict=True)
    }
    titles = dict(zip(sample.items["item_id"].astype(str), sample.items["title"], strict=True))
    rng = np.random.default_rng(args.seed)
    films = np.array(sorted(genres))
    withheld = set(films[rng.random(len(films)) < args.share].tolist())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = train_without(withheld, Path(tmp))
    seconds = time.perf_counter() - t0
    print(f"{len(withheld):,} of {len(films):,} films withheld; trained in {seconds:.0f} s")
    t1 = time.perf_counter()
    rec = with_new_items(base, addable(base, {i: genres[i] for i in withheld}))
    ms = 1000 * (time.perf_counter() - t1)
    print(f"{rec.new_items:,} added from their genres in {ms:.0f} ms")
    report_auc(rec, sample, genres, withheld)
    report_similar(rec, genres, titles, withheld)


def report_auc(
    rec: Recommender, sample: samples.Sample, genres: dict[str, list[str]], withheld: set[str]
) -> None:
    users = np.flatnonzero(rec.user_counts > 0)
    ids = rec.user_vocab.ids_of(users.tolist())
    activity = rec.user_counts[users].astype(np.float64)
    table = score_table(rec, users)
    ratings = sample.ratings.astype({"user_id": str, "item_id": str})
    raters = ratings[ratings["item_id"].isin(withheld)].groupby("item_id")["user_id"].agg(set)
    # Each user's share of ratings per genre, from what the model learned.
    learned = ratings[~ratings["item_id"].isin(withheld)]
    per_user: dict[str, dict[str, float]] = {}
    for user, group in learned.groupby("user_id")["item_id"]:
        counts: dict[str, float] = {}
        for item in group:
            for g in genres.get(item, []):
                counts[g] = counts.get(g, 0.0) + 1.0
        per_user[str(user)] = {g: c / len(group) for g, c in counts.items()}
    figures: dict[str, list[float]] = {"model": [], "no activity": [], "genre": [], "activity": []}
    for key, who in raters.items():
        item = str(key)
        row = rec.item_vocab.index(item)
        positive = np.fromiter((u in who for u in ids), dtype=bool, count=len(ids))
        if row < 0 or not positive.any() or positive.all():
            continue
        share = np.array([max(per_user.get(u, {}).get(g, 0.0) for g in genres[item]) for u in ids])
        figures["model"].append(auc(np.log(activity) + table[:, row], positive))
        figures["no activity"].append(auc(table[:, row], positive))
        figures["genre"].append(auc(np.log(activity) + np.log(share + 1e-3), positive))
        figures["activity"].append(auc(activity, positive))
    n = len(figures["model"])
    print(f"AUC of raters against non-raters, mean over {n} withheld films with raters:")
    for name, values in figures.items():
        print(f"  {name:<12} {np.mean(values):.3f}")


def report_similar(
    rec: Recommender, genres: dict[str, list[str]], titles: dict[str, str], withheld: set[str]
) -> None:
    similar = SimilarItems(rec)
    support = Settings().similar_min_support
    horror = sorted(i for i in withheld if "Horror" in genres[i] and rec.is_known_item(i))
    hits = []
    for item in horror:
        near = [s.item_id for s in similar.similar(item, 10, min_support=support)]
        hits.append(sum("Horror" in genres[i] for i in near))
    enough = np.mean(np.array(hits) >= 5)
    print(f"nearest 10 of {len(horror)} withheld Horror films: Horror among them "
          f"mean {np.mean(hits):.1f}, min {min(hits)}, >= 5 for {enough:.0%}")  # fmt: skip
    alone = [n for item, n in zip(horror, hits, strict=True) if genres[item] == ["Horror"]]
    print(f"  of the {len(alone)} whose only genre is Horror: mean {np.mean(alone):.1f}, "
          f"min {min(alone)}")  # fmt: skip
    fewest = horror[int(np.argmin(hits))]
    print(f"  fewest: {titles[fewest]} ({'|'.join(genres[fewest])})")
    example = horror[0]
    near = [titles[s.item_id] for s in similar.similar(example, 10, min_support=support)]
    print(f"  {titles[example]}: {'; '.join(near)}")


if __name__ == "__main__":
    main()
