"""Evaluation metrics: pure functions over numpy arrays, each checked in tests against values
worked out by hand. Definitions follow Aggarwal, "Recommender Systems" (2016), ch. 7."""

from __future__ import annotations

import numpy as np


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - actual) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - actual)))


def prediction_bias(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean predicted minus mean actual: > 0 means the model is too optimistic."""
    return float(np.mean(predicted) - np.mean(actual))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic, ties counted as half."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(order), dtype=np.float64)
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def liked_classification(
    predicted: np.ndarray, actual: np.ndarray, threshold: float
) -> dict[str, float]:
    """Precision, recall and ROC AUC of "liked" (rating >= threshold) from predicted ratings."""
    pred_pos = np.asarray(predicted) >= threshold
    true_pos = np.asarray(actual) >= threshold
    tp = int((pred_pos & true_pos).sum())
    return {
        "precision": tp / int(pred_pos.sum()) if pred_pos.any() else float("nan"),
        "recall": tp / int(true_pos.sum()) if true_pos.any() else float("nan"),
        "auc": roc_auc(predicted, true_pos),
    }


def ndcg_per_user(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG@k of each user (binary gains), for `ranking_metrics`' arguments."""
    hits = np.asarray(hits, dtype=bool)
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(1)
    ideal_len = np.minimum(np.asarray(n_relevant), k).astype(int)
    idcg = np.cumsum(discounts)[np.maximum(ideal_len, 1) - 1]
    ndcg: np.ndarray = dcg / idcg
    return ndcg


SPREAD = {"p05": 5, "q1": 25, "median": 50, "q3": 75, "p95": 95}
"""Percentiles kept of a per-user metric: a box plot's box and whiskers."""


def spread(values: np.ndarray) -> dict[str, float]:
    """The SPREAD percentiles and the mean of per-user values."""
    if len(values) == 0:
        return {}
    out = {name: float(np.percentile(values, q)) for name, q in SPREAD.items()}
    return {**out, "mean": float(np.mean(values))}


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """Precision, recall, NDCG, MAP and hit rate at k, averaged over users.

    `hits[u, j]` is True when the j-th recommendation of user u is relevant; `n_relevant[u]`
    counts u's relevant held-out items (users with none must be left out by the caller).
    NDCG uses binary gains; MAP@k divides by min(n_relevant, k).
    """
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2 or len(hits) == 0:
        return dict.fromkeys(("precision", "recall", "ndcg", "map", "hit_rate"), float("nan"))
    k = hits.shape[1]
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    cum_hits = np.cumsum(hits, axis=1)
    precision_at = cum_hits / np.arange(1, k + 1)
    ap = (precision_at * hits).sum(1) / np.minimum(n_rel, k)
    n_hits = hits.sum(1)
    return {
        "precision": float(np.mean(n_hits / k)),
        "recall": float(np.mean(n_hits / n_rel)),
        "ndcg": float(np.mean(ndcg_per_user(hits, n_relevant))),
        "map": float(np.mean(ap)),
        "hit_rate": float(np.mean(n_hits > 0)),
    }


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    return len(np.unique(recommended)) / n_items if n_items else float("nan")


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of exposure counts, every catalog item counted (zeros included):
    0 when all items are shown equally, close to 1 when a few items take all exposure."""
    x = np.sort(np.asarray(exposure, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return float("nan")
    index = np.arange(1, n + 1)
    return float(((2 * index - n - 1) * x).sum() / (n * x.sum()))


def exposure_counts(recommended: np.ndarray, n_items: int) -> np.ndarray:
    return np.bincount(np.asarray(recommended).ravel(), minlength=n_items)


def novelty(recommended: np.ndarray, item_counts: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(p_i) of recommended items, p_i the share of users who rated
    item i (add-one smoothed so unrated items stay finite). Higher is less obvious."""
    p = (np.asarray(item_counts, dtype=np.float64) + 1.0) / (n_users + 1.0)
    return float(np.mean(-np.log2(p[np.asarray(recommended).ravel()])))


def mean_popularity(recommended: np.ndarray, item_counts: np.ndarray) -> float:
    """Average number of training ratings of the recommended items."""
    return float(np.mean(np.asarray(item_counts)[np.asarray(recommended).ravel()]))
