"""What a candidate's checks decide: one function for `recsys train`, torchrun and the job."""

from __future__ import annotations

import pytest

from recsys import registry
from recsys.evaluation.gates import (
    AWAITING,
    CANARY,
    PROMOTED,
    REGISTERED,
    REJECTED,
    GateCheck,
    decide,
    off_policy_check,
)

PASSED = GateCheck("rmse_vs_biases", True, "RMSE 0.85 is below biases' 0.89")
FAILED = GateCheck("ndcg_vs_production", False, "NDCG@10 0.20 is below production's 0.25")
NOT_APPLIED = off_policy_check([], {"applied": False, "why_not": "effective sample size 203"})


@pytest.mark.parametrize(
    ("checks", "options", "action", "status"),
    [
        ([PASSED, NOT_APPLIED], {}, PROMOTED, registry.CANDIDATE),
        ([PASSED, FAILED], {}, REJECTED, registry.REJECTED),
        ([PASSED, FAILED], {"require_approval": True}, REJECTED, registry.REJECTED),
        ([PASSED], {"require_approval": True}, AWAITING, registry.CANDIDATE),
        ([PASSED], {"canary_share": 0.1, "has_production": True}, CANARY, registry.CANDIDATE),
        ([PASSED], {"canary_share": 0.1}, PROMOTED, registry.CANDIDATE),  # no one to compare
        ([FAILED], {"promote": False}, REGISTERED, registry.CANDIDATE),
    ],
)
def test_the_checks_decide_the_status_and_what_happens(
    checks: list[GateCheck], options: dict[str, object], action: str, status: str
) -> None:
    decided = decide(checks, **options)  # type: ignore[arg-type]
    assert (decided.action, decided.status) == (action, status)
    assert decided.passed == (FAILED not in checks)
    recorded = decided.as_json()
    assert recorded["reasons"] == ([FAILED.detail] if FAILED in checks else [])
    assert [c["gate"] for c in recorded["checks"]] == [c.gate for c in checks]


def test_the_off_policy_gate_reads_as_a_check() -> None:
    assert NOT_APPLIED.passed is None and "effective sample size 203" in NOT_APPLIED.detail
    failed = off_policy_check(["the candidate's rate is below production's"], {"applied": True})
    assert failed.passed is False and "below production" in failed.detail
    info = {"applied": True, "estimator": "dr", "candidate_rate": 0.2, "candidate_low": 0.15,
            "production_rate": 0.12}  # fmt: skip
    passed = off_policy_check([], info)
    assert passed.passed is True and "0.1500" in passed.detail
