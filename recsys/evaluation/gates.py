"""Every rule a model must pass before it serves, in one place.

`beats_baselines` is what any trained model must show; `beats_production` compares it with
production on the same holdout (tolerances from `Settings`), which both the nightly job
(`gates`: all of them) and `recsys train` apply before promoting. All read a report of
`recsys.evaluation.report`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recsys.config import Settings
from recsys.evaluation.report import Report


def beats_baselines(
    report: Report, k: int, min_ndcg_vs_popular: float = 1.0, min_ndcg_vs_ease: float = 0.0
) -> dict[str, Any]:
    """Whether the model may ship: its RMSE must be below the global mean's and the biases',
    its NDCG@k at least `min_ndcg_vs_popular` x the most-popular list's (a ranking that
    loses to a chart is no recommender) and at least `min_ndcg_vs_ease` x EASE's, the strong
    baseline. Falling below the biases' or EASE's NDCG warns, and so does a report without
    EASE (the gate then had no strong baseline; the report's notes say why).
    """
    m = report["model"]
    reasons = []
    for name in ("global_mean", "biases"):
        if (m["rmse"] or np.inf) >= (report[name]["rmse"] or np.inf):
            reasons.append(f"RMSE {m['rmse']:.4f} is not below {name}'s {report[name]['rmse']:.4f}")
    warnings = []
    key = f"ndcg@{k}"
    ours = m[key] or 0.0
    for name, ratio, setting in (
        ("most_popular", min_ndcg_vs_popular, "RECSYS_GATE_MIN_NDCG_VS_POPULAR"),
        ("ease", min_ndcg_vs_ease, "RECSYS_GATE_MIN_NDCG_VS_EASE"),
    ):
        theirs = (report[name][key] or 0.0) if name in report else 0.0
        if ours < ratio * theirs:
            reasons.append(
                f"NDCG@{k} {ours:.4f} is below {ratio} x {name}'s {theirs:.4f} ({setting})"
            )
    for name in ("biases", "ease"):
        if name not in report:
            continue
        theirs = report[name][key] or 0.0
        if ours < theirs:
            warnings.append(f"NDCG@{k} {ours:.4f} is below {name}'s {theirs:.4f}")
    if "ease" not in report:
        why = report.notes.get("ease", "not in the report")
        warnings.append(f"no strong baseline: EASE {why}")
    return {"passed": not reasons, "reasons": reasons, "warnings": warnings}


def gates(report: Report, settings: Settings, k: int) -> list[str]:
    """Why the candidate (`report["model"]`) may not replace production
    (`report["production"]`, when there is one); empty when it may."""
    reasons = list(
        beats_baselines(
            report, k, settings.gate_min_ndcg_vs_popular, settings.gate_min_ndcg_vs_ease
        )["reasons"]
    )
    return reasons + beats_production(report, settings, k)


def beats_production(report: Report, settings: Settings, k: int) -> list[str]:
    """Why the candidate does not match production on the same holdout (tolerances from
    `settings`); empty when it does, or when the report has no production row."""
    prod = report.get("production")
    if prod is None:
        return []
    reasons: list[str] = []
    cand = report["model"]
    ndcg = f"ndcg@{k}"
    if (cand["rmse"] or math.inf) > (prod["rmse"] or math.inf) + settings.gate_rmse_tolerance:
        reasons.append(
            f"RMSE {cand['rmse']:.4f} is worse than production's {prod['rmse']:.4f} by more "
            f"than {settings.gate_rmse_tolerance}"
        )
    if (cand[ndcg] or 0.0) < (prod[ndcg] or 0.0) - settings.gate_ndcg_tolerance:
        reasons.append(
            f"NDCG@{k} {cand[ndcg]:.4f} is below production's {prod[ndcg]:.4f} by more than "
            f"{settings.gate_ndcg_tolerance}"
        )
    if (cand["coverage"] or 0.0) < settings.gate_min_coverage_ratio * (prod["coverage"] or 0.0):
        reasons.append(
            f"catalog coverage {cand['coverage']:.4f} collapsed below "
            f"{settings.gate_min_coverage_ratio} x production's {prod['coverage']:.4f}"
        )
    if (cand["gini"] or 0.0) > (prod["gini"] or 0.0) + settings.gate_max_gini_increase:
        reasons.append(
            f"Gini of exposure {cand['gini']:.4f} exceeds production's {prod['gini']:.4f} by "
            f"more than {settings.gate_max_gini_increase}"
        )
    return reasons
