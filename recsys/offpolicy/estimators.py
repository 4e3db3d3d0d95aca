"""Off-policy estimators: what a target policy's lists would earn, judged on lists that another
policy (the logging one) showed.

The estimand is the rate of positive feedback per shown slot, V = E_u[(1/k) sum_i pi_B(i|u)
r(u, i)], where pi_B(i|u) is the probability that the target shows item i to user u and r the
chance that u answers a shown i positively. It assumes, as the item-level ("independent")
estimators of Li et al. 2018 do, that an item's reward does not depend on its position or on
the other items in the list. A logged slot showing item i is weighed by w = pi_B(i|u) / pi_A(i|u),
both inclusion probabilities (`recsys.exploration.ExplorePolicy.inclusion`).

- IPS: the mean over lists of (1/k) sum_slots w r. Unbiased where pi_A > 0 wherever pi_B > 0.
- SNIPS: IPS divided by the mean of (1/k) sum_slots w, whose expectation is 1: a little bias,
  much less variance (Swaminathan & Joachims 2015).
- DR: a reward model's direct estimate, (1/k) sum_i pi_B(i|u) rhat(u, i), plus IPS of the
  residuals r - rhat (Dudik, Langford & Li 2011): unbiased if either part is right.

Lists are the independent units: intervals are 95 % normal intervals over lists (the delta
method for SNIPS). Weights above `max_weight` are clipped (counted in `clipped`), trading a
downward bias for variance. The effective sample size is Kish's, (sum W)^2 / sum W^2 over the
lists' mean weights W.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.errors import InvalidInputError

Z95 = 1.959964
MAX_WEIGHT = 1_000.0
"""Default clip: a slot counts at most this many times its own weight of one."""
MAX_UNSUPPORTED = 0.01
"""Default refusal: the target may put at most this share of its slots where the logging policy
never shows anything."""


class NoSupportError(InvalidInputError):
    """The logging policy never shows (part of) what the target would show: no estimator can
    say how that part would do."""


@dataclass(frozen=True)
class Slots:
    """Logged slots, one entry each, and per list the direct-method term.

    `lists` numbers each slot's list 0..n-1; `size` is each list's k; `direct` (optional, per
    list) is sum_i pi_B(i|u) rhat(u, i) over every item the target may show."""

    lists: np.ndarray
    size: np.ndarray
    logging: np.ndarray
    target: np.ndarray
    reward: np.ndarray
    predicted: np.ndarray | None = None
    direct: np.ndarray | None = None
    unsupported: np.ndarray | None = None
    """Per list: the share of the target's slots on items the logging policy could not show."""

    @property
    def n_lists(self) -> int:
        return len(self.size)


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


@dataclass(frozen=True)
class OffPolicyEstimate:
    lists: int
    slots: int
    ips: Interval
    snips: Interval
    dr: Interval | None
    effective_sample_size: float
    max_weight: float
    clipped: int
    clip: float
    unsupported_share: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _mean_interval(per_list: np.ndarray) -> Interval:
    n = len(per_list)
    mean = float(per_list.mean())
    se = float(per_list.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return Interval(mean, mean - Z95 * se, mean + Z95 * se)


def _ratio_interval(numer: np.ndarray, denom: np.ndarray) -> Interval:
    """sum numer / sum denom with a delta-method interval (lists independent)."""
    n = len(numer)
    d = float(denom.mean())
    if d <= 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    ratio = float(numer.mean()) / d
    resid = (numer - ratio * denom) / d
    se = float(resid.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return Interval(ratio, ratio - Z95 * se, ratio + Z95 * se)


def estimate(
    slots: Slots,
    *,
    clip: float = MAX_WEIGHT,
    max_unsupported: float = MAX_UNSUPPORTED,
) -> OffPolicyEstimate:
    """IPS, SNIPS and (where the slots carry a reward model) DR estimates of the target's
    positive rate per slot. Raises NoSupportError where the target shows what the logging
    policy never does (exploration off, or items it could not show)."""
    n = slots.n_lists
    if n < 2:
        raise InvalidInputError("off-policy estimates need at least 2 logged lists")
    if np.any(slots.logging <= 0):
        raise InvalidInputError("a logged slot has no positive propensity")
    unsupported = float(slots.unsupported.mean()) if slots.unsupported is not None else 0.0
    if unsupported > max_unsupported:
        raise NoSupportError(
            f"the target policy would put {unsupported:.1%} of its slots on items the logged "
            f"policy never showed (at most {max_unsupported:.1%} allowed): log traffic with "
            "exploration on (RECSYS_EXPLORE_SHARE > 0) before judging another policy on it"
        )
    raw = slots.target / slots.logging
    weights = np.minimum(raw, clip)
    per_slot_k = slots.size[slots.lists].astype(np.float64)
    ips_l = np.bincount(slots.lists, weights * slots.reward / per_slot_k, minlength=n)
    w_l = np.bincount(slots.lists, weights / per_slot_k, minlength=n)
    dr = None
    if slots.predicted is not None and slots.direct is not None:
        resid = weights * (slots.reward - slots.predicted) / per_slot_k
        dr_l = slots.direct / slots.size + np.bincount(slots.lists, resid, minlength=n)
        dr = _mean_interval(dr_l)
    total = float(w_l.sum())
    ess = total**2 / float((w_l**2).sum()) if total > 0 else 0.0
    return OffPolicyEstimate(
        lists=n,
        slots=len(slots.lists),
        ips=_mean_interval(ips_l),
        snips=_ratio_interval(ips_l, w_l),
        dr=dr,
        effective_sample_size=ess,
        max_weight=float(raw.max()) if len(raw) else 0.0,
        clipped=int((raw > clip).sum()),
        clip=clip,
        unsupported_share=unsupported,
    )


def on_policy(lists: np.ndarray, size: np.ndarray, reward: np.ndarray) -> Interval:
    """The logging policy's own positive rate per slot, with its interval over lists."""
    per_list = np.bincount(lists, reward, minlength=len(size)) / size
    return _mean_interval(per_list)


def rated_mean(slots: Slots, rating: np.ndarray, rated: np.ndarray, clip: float) -> Interval:
    """The target's mean rating over the slots that would get one: a self-normalised ratio of
    weighted ratings to weighted rated slots."""
    n = slots.n_lists
    weights = np.minimum(slots.target / slots.logging, clip)
    numer = np.bincount(slots.lists, weights * np.where(rated, rating, 0.0), minlength=n)
    denom = np.bincount(slots.lists, weights * rated, minlength=n)
    return _ratio_interval(numer, denom)


@dataclass(frozen=True)
class RewardModel:
    """P(positive | shown) as a logistic function of the rating head's predicted rating,
    fitted on logged slots: the reward model of the doubly robust estimator."""

    intercept: float
    slope: float

    @staticmethod
    def fit(predicted: np.ndarray, reward: np.ndarray, *, l2: float = 1e-3) -> RewardModel:
        """Newton steps on the (lightly regularised) logistic log-likelihood."""
        x = np.column_stack([np.ones(len(predicted)), predicted.astype(np.float64)])
        beta = np.zeros(2)
        for _ in range(25):
            p = 1.0 / (1.0 + np.exp(-(x @ beta)))
            grad = x.T @ (p - reward) + l2 * beta
            hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            beta -= step
            if np.abs(step).max() < 1e-8:
                break
        return RewardModel(float(beta[0]), float(beta[1]))

    def __call__(self, predicted: np.ndarray) -> np.ndarray:
        out: np.ndarray = 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * predicted)))
        return out
