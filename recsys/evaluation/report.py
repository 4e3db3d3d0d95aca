"""The evaluation report: the model side by side with the baselines, on the same holdout.

Ranking protocol: for each user with at least one relevant held-out item (rated >= the
"liked" threshold), candidates are all items the user did not rate in training, and the
top k of each scorer are compared with the relevant items.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.data.interactions import Interactions, is_sorted
from recsys.evaluation import metrics
from recsys.evaluation.baselines import BiasBaseline, GlobalMean, MostPopular, Scorer
from recsys.evaluation.ease import Ease
from recsys.evaluation.top_columns import top_columns

Metrics = dict[str, float | None]
"""One scorer's figures by name ("rmse", "ndcg@10", ...); None where undefined."""

log = logging.getLogger(__name__)

CATALOG_KEY = "_catalog"
SPREAD_KEY = "_spread"
NOTES_KEY = "_notes"


@dataclass(frozen=True)
class Report:
    """Every scorer's metrics on one holdout: the model ("model"), the baselines by name, and
    scorers passed in (such as "production"). Stored as JSON by `to_json`, read back by
    `from_json`; the stored shape is what the dashboard and the registry have always held."""

    scorers: dict[str, Metrics]
    n_test: int
    n_ranked_users: int
    catalog_mean_popularity: float
    spread: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per scorer, percentiles of NDCG@k over users (`metrics.SPREAD`): a mean hides
    whether a model is better for most users or much better for a few."""
    notes: dict[str, str] = field(default_factory=dict)
    """What a scorer was, where its name does not say it all (which EASE ran, or why none)."""

    def __getitem__(self, name: str) -> Metrics:
        return self.scorers[name]

    def __contains__(self, name: object) -> bool:
        return name in self.scorers

    def get(self, name: str) -> Metrics | None:
        return self.scorers.get(name)

    @property
    def model(self) -> Metrics:
        return self.scorers["model"]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.scorers,
            CATALOG_KEY: {
                "n_test": float(self.n_test),
                "n_ranked_users": float(self.n_ranked_users),
                "catalog_mean_popularity": self.catalog_mean_popularity,
            },
            SPREAD_KEY: self.spread,
            NOTES_KEY: self.notes,
        }

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Report:
        catalog = stored.get(CATALOG_KEY) or {}
        return cls(
            {name: dict(row) for name, row in stored.items() if not name.startswith("_")},
            int(catalog.get("n_test") or 0),
            int(catalog.get("n_ranked_users") or 0),
            float(catalog.get("catalog_mean_popularity") or 0.0),
            {name: dict(s) for name, s in (stored.get(SPREAD_KEY) or {}).items()},
            {str(name): str(note) for name, note in (stored.get(NOTES_KEY) or {}).items()},
        )


def _rating_metrics(
    scorer: Scorer, test: Interactions, threshold: float
) -> dict[str, float | None]:
    pred = scorer.predict_rows(test.users, test.items)
    keys = ("rmse", "mae", "bias", "precision_liked", "recall_liked", "auc_liked")
    if pred is None:
        return dict.fromkeys(keys)
    cls = metrics.liked_classification(pred, test.ratings, threshold)
    return {
        "rmse": metrics.rmse(pred, test.ratings),
        "mae": metrics.mae(pred, test.ratings),
        "bias": metrics.prediction_bias(pred, test.ratings),
        "precision_liked": cls["precision"],
        "recall_liked": cls["recall"],
        "auc_liked": cls["auc"],
    }


SCORE_BATCH_FLOATS = 1 << 21
"""Scores per batch of users in `RankingTask.top_k` (8 MB of float32): scored, masked and cut
to the top k while they are in the cache. The ranking head's judge, every epoch on MovieLens
(671 users x 9,066 items), took 25 ms a pass in batches of 231 users against 32 ms in one
batch of 671 (batches of up to 64 MB, and a copy of each to mask)."""


class RankingTask:
    """Which users to rank for, what they already saw, and what they liked afterwards."""

    def __init__(
        self,
        train: Interactions,
        test: Interactions,
        threshold: float,
        k: int,
        max_users: int | None = None,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.n_items = train.n_items
        self.n_users = train.n_users
        self.item_counts = train.item_counts()
        liked = test.ratings >= threshold
        rel_users, rel_items = test.users[liked], test.items[liked]
        users = np.unique(rel_users)
        if max_users is not None and len(users) > max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        self.users = users
        self.n_relevant = np.bincount(rel_users, minlength=train.n_users)[users]
        self.relevant_keys = np.unique(rel_users.astype(np.int64) * self.n_items + rel_items)
        if is_sorted(train.users):  # snapshots come sorted by user: no copy needed
            self.seen_users, self.seen_items = train.users, train.items
        else:
            order = np.argsort(train.users, kind="stable")
            self.seen_users = train.users[order]
            self.seen_items = train.items[order]

    def top_k(self, scorer: Scorer) -> np.ndarray | None:
        """The top-k item rows for every task user (users x k), training items excluded."""
        out = []
        k = min(self.k, self.n_items)
        batch = max(16, min(1024, SCORE_BATCH_FLOATS // max(1, self.n_items)))
        for start in range(0, len(self.users), batch):
            users = self.users[start : start + batch]
            scores = scorer.rank_scores(users)
            if scores is None:
                return None
            scores = scores.float()  # the scorer's fresh matrix (or a float copy): masked here
            # Mask what each user rated in training: positions of these users' rows.
            lo = np.searchsorted(self.seen_users, users[0])
            hi = np.searchsorted(self.seen_users, users[-1], side="right")
            su, si = self.seen_users[lo:hi], self.seen_items[lo:hi]
            pos = np.searchsorted(users, su)
            keep = (pos < len(users)) & (users[np.minimum(pos, len(users) - 1)] == su)
            scores[
                torch.from_numpy(pos[keep]), torch.from_numpy(si[keep].astype(np.int64))
            ] = -torch.inf
            out.append(top_columns(scores, k).numpy())
        return np.concatenate(out) if out else np.empty((0, k), dtype=np.int64)

    def evaluate(self, scorer: Scorer) -> dict[str, float | None]:
        return self.evaluate_with_spread(scorer)[0]

    def evaluate_with_spread(
        self, scorer: Scorer
    ) -> tuple[dict[str, float | None], dict[str, float]]:
        """The metrics, and the percentiles of NDCG@k over users."""
        keys = [f"{m}@{self.k}" for m in ("precision", "recall", "ndcg", "map", "hit_rate")]
        keys += ["coverage", "gini", "novelty", "mean_popularity"]
        top = self.top_k(scorer)
        if top is None or len(top) == 0:
            return dict.fromkeys(keys), {}
        keys_found = self.users[:, None].astype(np.int64) * self.n_items + top
        hits = np.isin(keys_found, self.relevant_keys)
        rank = metrics.ranking_metrics(hits, self.n_relevant)
        out: dict[str, float | None] = {f"{m}@{self.k}": v for m, v in rank.items()}
        out["coverage"] = metrics.catalog_coverage(top, self.n_items)
        out["gini"] = metrics.gini(metrics.exposure_counts(top, self.n_items))
        out["novelty"] = metrics.novelty(top, self.item_counts, self.n_users)
        out["mean_popularity"] = metrics.mean_popularity(top, self.item_counts)
        return out, metrics.spread(metrics.ndcg_per_user(hits, self.n_relevant))


def _baselines(train: Interactions, ease_max_items: int) -> tuple[list[Scorer], dict[str, str]]:
    scorers: list[Scorer] = [GlobalMean(train), BiasBaseline(train), MostPopular(train)]
    if ease_max_items > 0:
        ease = Ease(train, max_items=ease_max_items)
        return [*scorers, ease], {ease.name: ease.description}
    return scorers, {Ease.name: "not computed: RECSYS_EASE_MAX_ITEMS is 0"}


def _scored(
    scorer: Scorer, task: RankingTask, test: Interactions, threshold: float
) -> tuple[Metrics, dict[str, float]]:
    """One scorer's row of a report, and the spread of its NDCG over users."""
    row = _rating_metrics(scorer, test, threshold)
    ranked, spread = task.evaluate_with_spread(scorer)
    row.update(ranked)
    # Undefined metrics are None, not NaN: NaN is not JSON, and PostgreSQL refuses it.
    return {k: None if v is None or np.isnan(v) else v for k, v in row.items()}, spread


def baseline_report(
    train: Interactions,
    test: Interactions,
    *,
    threshold: float = 4.0,
    k: int = 10,
    max_users: int | None = 20_000,
    seed: int = 0,
    ease_max_items: int = Ease.MAX_ITEMS,
    cache: BaselineCache | None = None,
) -> Report:
    """The baselines' rows of `evaluate`'s report on `test` (global mean, biases, most
    popular, and EASE within `ease_max_items` squared floats: every item where that fits,
    else that many most-rated, `Ease.learned_items`; 0: no EASE, which the notes say). With
    a `cache`, the figures for the same train, test and protocol are read back instead of
    computed (EASE by items is most of a report's time: 12 s at 25M ratings). They need no
    model, so a training run can compute them while it trains (recsys.training.pipeline)."""
    key = None
    if cache is not None:
        key = cache.key(train, test, threshold, k, max_users, seed, ease_max_items)
        stored = cache.get(key)
        if stored is not None:
            return stored
    task = RankingTask(train, test, threshold, k, max_users, seed)
    baselines, notes = _baselines(train, ease_max_items)
    rows: dict[str, Metrics] = {}
    spreads: dict[str, dict[str, float]] = {}
    for scorer in baselines:
        rows[scorer.name], spreads[scorer.name] = _scored(scorer, task, test, threshold)
    report = Report(rows, 0, 0, 0.0, spreads, notes)
    if cache is not None and key is not None:
        cache.put(key, report)
    return report


def evaluate(
    model: Scorer,
    train: Interactions,
    test: Interactions,
    *,
    threshold: float = 4.0,
    k: int = 10,
    max_users: int | None = 20_000,
    extra: Sequence[Scorer] = (),
    seed: int = 0,
    ease_max_items: int = Ease.MAX_ITEMS,
    cache: BaselineCache | None = None,
    baselines: Report | None = None,
) -> Report:
    """Metrics of `model` and of the baselines (plus `extra` scorers) on `test`: the
    baselines' rows are `baselines` when given (`baseline_report` of the same train, test and
    protocol), else computed here by it, with the `cache` and `ease_max_items` it takes."""
    task = RankingTask(train, test, threshold, k, max_users, seed)
    rows: dict[str, Metrics] = {}
    spreads: dict[str, dict[str, float]] = {}
    rows[model.name], spreads[model.name] = _scored(model, task, test, threshold)
    if baselines is None:
        baselines = baseline_report(
            train,
            test,
            threshold=threshold,
            k=k,
            max_users=max_users,
            seed=seed,
            ease_max_items=ease_max_items,
            cache=cache,
        )
    rows.update(baselines.scorers)
    spreads.update(baselines.spread)
    for scorer in extra:
        rows[scorer.name], spreads[scorer.name] = _scored(scorer, task, test, threshold)
    return Report(
        rows, len(test), len(task.users), float(task.item_counts.mean()), spreads, baselines.notes
    )


class BaselineCache:
    """The baselines' figures of a report, kept as JSON files in `folder` by a hash of what
    decides them (the train and test data, the threshold, k, the users ranked, the items
    EASE learns), so that a retrain on unchanged data does not fit EASE again. The newest
    `KEEP` files are kept."""

    KEEP = 8

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(
        train: Interactions,
        test: Interactions,
        threshold: float,
        k: int,
        max_users: int | None,
        seed: int,
        ease_max_items: int,
    ) -> str:
        from recsys.data.snapshot import fingerprint  # the store's import chain: only here

        learned = Ease.learned_items(train.n_users, train.n_items, ease_max_items)
        protocol = f"{threshold}|{k}|{max_users}|{seed}|{learned}"
        h = hashlib.sha256(f"{fingerprint(train)}|{fingerprint(test)}|{protocol}".encode())
        return h.hexdigest()[:24]

    def get(self, key: str) -> Report | None:
        path = self.folder / f"{key}.json"
        try:
            return Report.from_json(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None  # absent, or left unreadable: compute again

    def put(self, key: str, report: Report) -> None:
        """Store the figures; a cache that cannot be written (a full disk) costs the next run
        a recomputation, never this run its result."""
        tmp = self.folder / f".{key}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(report.to_json()))
            tmp.replace(self.folder / f"{key}.json")  # whole or not at all
            kept = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in kept[self.KEEP :]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("baselines not cached in %s: %s", self.folder, exc)
            with contextlib.suppress(OSError):  # a folder that is not one: no file either
                tmp.unlink(missing_ok=True)


def format_report(report: Report, max_width: int = 80) -> str:
    """A plain-text table: metrics down, scorers across, in blocks of columns that each fit
    `max_width` characters (a terminal's 80 columns had wrapped every row of six scorers)."""
    names = list(report.scorers)
    metric_names = list(report[names[0]])
    width = max(len(m) for m in metric_names) + 2
    lines: list[str] = []
    for block in _column_blocks(names, max_width - width):
        if lines:
            lines.append("")
        lines.append(" " * width + "".join(f"{n:>{w}}" for n, w in block))
        for metric in metric_names:
            cells = []
            for n, w in block:
                v = report[n].get(metric)
                cells.append(f"{'-':>{w}}" if v is None or np.isnan(v) else f"{v:>{w}.4f}")
            lines.append(f"{metric:<{width}}" + "".join(cells))
    lines.extend(f"{name}: {note}" for name, note in report.notes.items())
    return "\n".join(lines)


def _column_blocks(names: list[str], room: int) -> list[list[tuple[str, int]]]:
    """`names` with their column widths (the name or a figure such as 129.5391, and two
    spaces), cut into runs that fit `room` characters (at least one column a run)."""
    blocks: list[list[tuple[str, int]]] = [[]]
    used = 0
    for name in names:
        w = max(len(name), 8) + 2
        if blocks[-1] and used + w > room:
            blocks.append([])
            used = 0
        blocks[-1].append((name, w))
        used += w
    return blocks
