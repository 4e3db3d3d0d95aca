"""Every rule a model must pass before it serves, and what the checks decide, in one place.

Each rule is a `GateCheck`: passed, failed, or not applied, with what it compared in words,
so that an operator sees why a candidate passed as well as why one failed.
`baseline_checks` is what any trained model must show; `production_checks` compares it with
production on the same holdout (tolerances from `Settings`), which both the nightly job
(`gate_checks`: both) and `recsys train` apply; `off_policy_check` is the job's judgement of
the candidate on the lists production served (`recsys.offpolicy.run.off_policy_gate`). Both
read a report of `recsys.evaluation.report`. `decide` turns the checks into the candidate's
registry status and what happens to it, for `recsys train` (in one process or under
torchrun) and the nightly job alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from recsys import registry
from recsys.config import Settings
from recsys.evaluation.report import Report

PROMOTED, CANARY, AWAITING, REJECTED = "promoted", "canary", "awaiting_approval", "rejected"
REGISTERED = "registered"
"""What happens to a candidate (`Decision.action`); REGISTERED: kept as a candidate without
being put forward (`recsys train --no-promote`)."""


@dataclass(frozen=True)
class GateCheck:
    gate: str
    """Stable name, such as "ndcg_vs_most_popular"."""
    passed: bool | None
    """None: not applied (what it needs is missing; `detail` says what)."""
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failures(checks: list[GateCheck]) -> list[str]:
    """The details of the checks that failed: the reasons a candidate is refused."""
    return [c.detail for c in checks if c.passed is False]


def baseline_checks(
    report: Report, k: int, min_ndcg_vs_popular: float = 1.0, min_ndcg_vs_ease: float = 0.0
) -> list[GateCheck]:
    """The model's RMSE must be below the global mean's and the biases', its NDCG@k at least
    `min_ndcg_vs_popular` x the most-popular list's (a ranking that loses to a chart is no
    recommender) and at least `min_ndcg_vs_ease` x EASE's, the strong baseline."""
    m = report["model"]
    out = []
    for name in ("global_mean", "biases"):
        ours, theirs = m["rmse"] or math.inf, report[name]["rmse"] or math.inf
        passed = ours < theirs
        relation = "below" if passed else "not below"
        out.append(GateCheck(f"rmse_vs_{name}", passed,
                             f"RMSE {ours:.4f} is {relation} {name}'s {theirs:.4f}"))  # fmt: skip
    key = f"ndcg@{k}"
    score = m[key] or 0.0
    for name, ratio, setting in (
        ("most_popular", min_ndcg_vs_popular, "RECSYS_GATE_MIN_NDCG_VS_POPULAR"),
        ("ease", min_ndcg_vs_ease, "RECSYS_GATE_MIN_NDCG_VS_EASE"),
    ):
        if name not in report:
            why = report.notes.get(name, "not in the report")
            out.append(GateCheck(f"ndcg_vs_{name}", None, f"{name}: {why}"))
            continue
        theirs = report[name][key] or 0.0
        passed = score >= ratio * theirs
        relation = "at least" if passed else "below"
        out.append(GateCheck(
            f"ndcg_vs_{name}", passed,
            f"NDCG@{k} {score:.4f} is {relation} {ratio} x {name}'s {theirs:.4f} ({setting})",
        ))  # fmt: skip
    return out


def beats_baselines(
    report: Report, k: int, min_ndcg_vs_popular: float = 1.0, min_ndcg_vs_ease: float = 0.0
) -> dict[str, Any]:
    """Whether the model may ship (`baseline_checks`), with every check. Falling below the
    biases' or EASE's NDCG warns, and so does a report without EASE (the gate then had no
    strong baseline; the report's notes say why)."""
    checks = baseline_checks(report, k, min_ndcg_vs_popular, min_ndcg_vs_ease)
    key = f"ndcg@{k}"
    ours = report["model"][key] or 0.0
    warnings = []
    for name in ("biases", "ease"):
        if name in report and ours < (report[name][key] or 0.0):
            warnings.append(f"NDCG@{k} {ours:.4f} is below {name}'s {report[name][key]:.4f}")
    if "ease" not in report:
        why = report.notes.get("ease", "not in the report")
        warnings.append(f"no strong baseline: EASE {why}")
    reasons = failures(checks)
    return {
        "passed": not reasons,
        "reasons": reasons,
        "warnings": warnings,
        "checks": [c.as_dict() for c in checks],
    }


PRODUCTION_GATE = "vs_production"
"""The name of the not-applied check a report carries where production could not be read."""


def production_checks(report: Report, settings: Settings, k: int) -> list[GateCheck]:
    """The candidate against production on the same holdout (tolerances from `settings`);
    none when the report has no production row."""
    prod = report.get("production")
    if prod is None:
        return []
    cand = report["model"]
    ndcg = f"ndcg@{k}"
    c_rmse, p_rmse = cand["rmse"] or math.inf, prod["rmse"] or math.inf
    c_ndcg, p_ndcg = cand[ndcg] or 0.0, prod[ndcg] or 0.0
    c_cov, p_cov = cand["coverage"] or 0.0, prod["coverage"] or 0.0
    c_gini, p_gini = cand["gini"] or 0.0, prod["gini"] or 0.0
    rmse_ok = c_rmse <= p_rmse + settings.gate_rmse_tolerance
    ndcg_ok = c_ndcg >= p_ndcg - settings.gate_ndcg_tolerance
    cov_ok = c_cov >= settings.gate_min_coverage_ratio * p_cov
    gini_ok = c_gini <= p_gini + settings.gate_max_gini_increase
    return [
        GateCheck("rmse_vs_production", rmse_ok,
                  f"RMSE {c_rmse:.4f} is {'within' if rmse_ok else 'worse than'} production's "
                  f"{p_rmse:.4f} {'+' if rmse_ok else 'by more than'} "
                  f"{settings.gate_rmse_tolerance}"),
        GateCheck("ndcg_vs_production", ndcg_ok,
                  f"NDCG@{k} {c_ndcg:.4f} is {'within' if ndcg_ok else 'below'} production's "
                  f"{p_ndcg:.4f} {'-' if ndcg_ok else 'by more than'} "
                  f"{settings.gate_ndcg_tolerance}"),
        GateCheck("coverage_vs_production", cov_ok,
                  f"catalog coverage {c_cov:.4f} {'holds' if cov_ok else 'collapsed below'} "
                  f"{settings.gate_min_coverage_ratio} x production's {p_cov:.4f}"),
        GateCheck("gini_vs_production", gini_ok,
                  f"Gini of exposure {c_gini:.4f} {'is within' if gini_ok else 'exceeds'} "
                  f"production's {p_gini:.4f} {'+' if gini_ok else 'by more than'} "
                  f"{settings.gate_max_gini_increase}"),
    ]  # fmt: skip


def beats_production(report: Report, settings: Settings, k: int) -> list[str]:
    """Why the candidate does not match production on the same holdout; empty when it does,
    or when the report has no production row."""
    return failures(production_checks(report, settings, k))


def gate_checks(report: Report, settings: Settings, k: int) -> list[GateCheck]:
    """Every check of the nightly job's offline gates, passes included."""
    return [
        *baseline_checks(
            report, k, settings.gate_min_ndcg_vs_popular, settings.gate_min_ndcg_vs_ease
        ),
        *production_checks(report, settings, k),
    ]


def gates(report: Report, settings: Settings, k: int) -> list[str]:
    """Why the candidate (`report["model"]`) may not replace production
    (`report["production"]`, when there is one); empty when it may."""
    return failures(gate_checks(report, settings, k))


def off_policy_check(reasons: list[str], info: dict[str, Any]) -> GateCheck:
    """The off-policy gate's outcome (`recsys.offpolicy.run.off_policy_gate`) as a check:
    passed, failed, or not applied and why."""
    if not info.get("applied"):
        return GateCheck("off_policy", None, f"off-policy gate not applied: {info.get('why_not')}")
    if reasons:
        return GateCheck("off_policy", False, "; ".join(reasons))
    return GateCheck(
        "off_policy",
        True,
        f"off-policy ({info.get('estimator')}): the candidate's positive rate "
        f"{info.get('candidate_rate') or 0:.4f} (95 % lower bound "
        f"{info.get('candidate_low') or 0:.4f}) against production's observed "
        f"{info.get('production_rate') or 0:.4f}",
    )


@dataclass(frozen=True)
class Decision:
    """What a candidate's checks decide: its registry status and what happens to it."""

    checks: list[GateCheck]
    action: str
    """PROMOTED, CANARY, AWAITING (an operator's approval), REJECTED or REGISTERED."""
    status: str
    """The version's registry status until then (`registry.CANDIDATE` or `REJECTED`)."""

    @property
    def reasons(self) -> list[str]:
        return failures(self.checks)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict[str, Any]:
        """The gate as the registry records it."""
        checks = [c.as_dict() for c in self.checks]
        return {"passed": self.passed, "reasons": self.reasons, "checks": checks}


def decide(
    checks: list[GateCheck],
    *,
    promote: bool = True,
    require_approval: bool = False,
    canary_share: float = 0.0,
    has_production: bool = False,
) -> Decision:
    """A failed check rejects the candidate; one that passed them all goes to production, or
    waits for an operator (`require_approval`), or first serves a canary share of users
    when there is a production to compare with. Without `promote` it is only registered."""
    if not promote:
        return Decision(checks, REGISTERED, registry.CANDIDATE)
    if failures(checks):
        return Decision(checks, REJECTED, registry.REJECTED)
    if require_approval:
        return Decision(checks, AWAITING, registry.CANDIDATE)
    if canary_share > 0 and has_production:
        return Decision(checks, CANARY, registry.CANDIDATE)
    return Decision(checks, PROMOTED, registry.CANDIDATE)
