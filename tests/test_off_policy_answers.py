"""Off-policy reports answered from the background: at once when there is one, "computing"
while the first is, the old one while a newer one is computed, and errors to the caller."""

from __future__ import annotations

import threading

import pytest

from recsys.errors import NotFoundError
from recsys.offpolicy import answers
from recsys.offpolicy.answers import Reports

KEY = ("sqlite://", "v1", 168.0, None)


class Slow:
    """A report computation that finishes when the test lets it."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.go = threading.Event()
        self.calls = 0

    def __call__(self) -> dict[str, int]:
        self.calls += 1
        assert self.go.wait(10)
        return {"value": self.value}


def _settled(reports: Reports, compute: Slow) -> dict[str, object]:
    """The answer once the computation under way has finished."""
    compute.go.set()
    return reports.answer(KEY, compute, wait_s=10)


def test_the_first_report_is_computing_then_answered_at_once() -> None:
    reports = Reports()
    first = Slow(1)
    pending = reports.answer(KEY, first, wait_s=0.05)
    assert pending["status"] == "computing" and pending["version"] == "v1"
    assert pending["retry_after_s"] == answers.RETRY_AFTER_S
    # Asked again while it runs: the same computation, not a second one.
    assert reports.answer(KEY, first, wait_s=0.05)["status"] == "computing"
    done = _settled(reports, first)
    assert done["value"] == 1 and done["refreshing"] is False
    again = reports.answer(KEY, Slow(2), wait_s=0)  # fresh: answered, nothing recomputed
    assert again["value"] == 1 and again["refreshing"] is False
    assert isinstance(again["age_s"], float) and again["age_s"] >= 0
    assert first.calls == 1


def test_a_report_that_is_in_within_the_wait_is_answered() -> None:
    ready = Slow(3)
    ready.go.set()
    assert Reports().answer(KEY, ready, wait_s=10)["value"] == 3


def test_an_old_report_is_answered_while_a_newer_one_is_computed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports = Reports()
    _settled(reports, Slow(1))
    monkeypatch.setattr(answers, "REUSE_S", 0.0)
    newer = Slow(2)
    stale = reports.answer(KEY, newer, wait_s=0)
    assert stale["value"] == 1 and stale["refreshing"] is True
    newer.go.set()
    monkeypatch.setattr(answers, "REUSE_S", 3600.0)
    for _ in range(100):  # the thread stores it, then the next request gets it
        fresh = reports.answer(KEY, Slow(9), wait_s=0)
        if fresh["value"] == 2:
            break
        threading.Event().wait(0.05)
    assert fresh["value"] == 2 and fresh["refreshing"] is False


def test_an_error_reaches_the_caller_and_the_next_request_tries_again() -> None:
    reports = Reports()

    def missing() -> dict[str, int]:
        raise NotFoundError("no version v-nope")

    with pytest.raises(NotFoundError, match="v-nope"):
        reports.answer(KEY, missing, wait_s=10)
    ready = Slow(4)
    ready.go.set()
    assert reports.answer(KEY, ready, wait_s=10)["value"] == 4
