"""Metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys.evaluation import metrics
from recsys.evaluation.report import Report, format_report


def test_rating_errors() -> None:
    pred, actual = np.array([3.0, 4.0, 5.0]), np.array([2.0, 4.0, 3.0])
    assert metrics.rmse(pred, actual) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert metrics.mae(pred, actual) == pytest.approx(1.0)
    assert metrics.prediction_bias(pred, actual) == pytest.approx(1.0)


def test_auc_counts_pairs_and_ties() -> None:
    # positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5), (0.9>0.1), (0.5=0.5 -> 1/2),
    # (0.5>0.1) -> 3.5 of 4.
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([True, True, False, False])
    assert metrics.roc_auc(scores, labels) == pytest.approx(3.5 / 4)
    assert math.isnan(metrics.roc_auc(scores, np.ones(4, dtype=bool)))


def test_liked_classification() -> None:
    pred = np.array([4.5, 4.1, 3.0, 2.0])
    actual = np.array([5.0, 3.0, 4.0, 1.0])
    out = metrics.liked_classification(pred, actual, 4.0)
    assert out["precision"] == pytest.approx(1 / 2)  # predicted liked: 4.5 (yes), 4.1 (no)
    assert out["recall"] == pytest.approx(1 / 2)  # actually liked: 5.0 (found), 4.0 (missed)


def test_ranking_metrics_by_hand() -> None:
    # user A: hits at positions 1 and 3 of k=3, 2 relevant; user B: no hit, 1 relevant.
    hits = np.array([[True, False, True], [False, False, False]])
    out = metrics.ranking_metrics(hits, np.array([2, 1]))
    assert out["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["recall"] == pytest.approx((1.0 + 0) / 2)
    dcg_a = 1 + 1 / math.log2(4)
    idcg_a = 1 + 1 / math.log2(3)
    assert out["ndcg"] == pytest.approx((dcg_a / idcg_a + 0) / 2)
    ap_a = (1 / 1 + 2 / 3) / 2
    assert out["map"] == pytest.approx(ap_a / 2)
    assert out["hit_rate"] == pytest.approx(0.5)


def test_exposure_metrics() -> None:
    recommended = np.array([[0, 1], [0, 2]])
    assert metrics.catalog_coverage(recommended, 4) == pytest.approx(3 / 4)
    counts = metrics.exposure_counts(recommended, 4)
    assert counts.tolist() == [2, 1, 1, 0]
    # Gini of [0,1,1,2]: sum_i (2i-n-1) x_(i) / (n sum x) = (-3*0 -1*1 +1*1 +3*2)/(4*4)
    assert metrics.gini(counts) == pytest.approx(6 / 16)
    assert metrics.gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    item_counts = np.array([9, 1, 3, 0])
    assert metrics.mean_popularity(recommended, item_counts) == pytest.approx((9 + 1 + 9 + 3) / 4)
    p = (item_counts + 1) / 11
    expected = np.mean(-np.log2(p[[0, 1, 0, 2]]))
    assert metrics.novelty(recommended, item_counts, 10) == pytest.approx(expected)


@given(st.lists(st.integers(0, 100), min_size=1, max_size=50))
def test_gini_is_between_zero_and_one(counts: list[int]) -> None:
    g = metrics.gini(np.array(counts))
    assert math.isnan(g) or -1e-12 <= g <= 1.0


@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=40), st.data())
def test_auc_of_reversed_scores_is_complement(scores: list[float], data: st.DataObject) -> None:
    labels = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    )
    s = np.array(scores)
    a, b = metrics.roc_auc(s, labels), metrics.roc_auc(-s, labels)
    if not math.isnan(a):
        assert a + b == pytest.approx(1.0)


def test_the_report_table_fits_80_columns_with_every_figure() -> None:
    names = ["model", "global_mean", "biases", "most_popular", "ease", "production"]
    metrics = ["rmse", "precision_liked", "mean_popularity"]
    figures: dict[str, dict[str, float | None]] = {
        n: {m: 100.0 * i + j + 0.123456 for j, m in enumerate(metrics)} for i, n in enumerate(names)
    }
    figures["biases"]["rmse"] = None
    report = Report(figures, n_test=10, n_ranked_users=3, catalog_mean_popularity=1.0)
    table = format_report(report).splitlines()
    assert max(len(line) for line in table) <= 80
    headers = [line.split() for line in table if line.startswith(" ")]
    assert len(headers) == 2 and [n for h in headers for n in h] == names  # two blocks, in order
    rows = [line.split() for line in table if line.startswith("mean_popularity")]
    assert [v for row in rows for v in row[1:]] == [f"{100.0 * i + 2.123456:.4f}" for i in range(6)]
    rmse = next(line.split() for line in table if line.startswith("rmse"))
    assert rmse[:4] == ["rmse", "0.1235", "100.1235", "-"]  # biases has none
