"""Judging a model version on logged traffic: what its lists would have earned, had it served
the lists that another version showed (`recsys evaluate --off-policy`, the Models page, the
retraining job's gate).

For each logged list the candidate ranks the same user's candidates as they stood when the
list was served (items rated before then are banned; ratings given later are not, though the
candidate may have trained on them), and the target policy (the candidate served with the
service's exploration) gives each logged item its probability of being shown.

Learned answers. A candidate trained on the ratings that answered the logged lists would be
judged on answers it has seen. With a hash split (the default), the judged model is the
evaluated twin, which never learned the (user, item) pairs of the hash holdout; only logged
slots whose pair falls there are kept, each standing for 1 / test_fraction slots (its logging
propensity times the holdout's share). That subsample is independent of what was shown and
what was answered, so the estimates stay unbiased, on about a tenth of the slots.

The reward model of DR is the rating head: P(positive | shown) as a logistic function of the
predicted rating, fitted on the logged slots with the rating their list was served with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recsys.data.split import pair_hash_of_ids
from recsys.data.vocab import UNKNOWN
from recsys.exploration import ExplorePolicy
from recsys.lists.ranker import Ranker
from recsys.model.recommender import Recommender
from recsys.offpolicy.estimators import (
    MAX_UNSUPPORTED,
    MAX_WEIGHT,
    Interval,
    NoSupportError,
    OffPolicyEstimate,
    RewardModel,
    Slots,
    estimate,
    on_policy,
    rated_mean,
)
from recsys.store.logged import Logged, LoggedList


@dataclass(frozen=True)
class Holdout:
    """The hash holdout the judged model never learned: pairs with pair_hash(seed) < share."""

    seed: int
    share: float


@dataclass
class OffPolicyReport:
    version: str
    target_policy: dict[str, float]
    judged_on: str
    lists: int
    skipped: dict[str, int]
    estimate: OffPolicyEstimate | None
    refused: str | None
    mean_rating: Interval | None
    reward_model: RewardModel | None
    logging: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per logging version: its lists and its own (on-policy) positive rate per slot."""

    def as_json(self) -> dict[str, Any]:
        """Plain data for JSON, which has no NaN or infinity (an interval over too few lists
        has no bounds): those become None."""
        finite: dict[str, Any] = _finite(asdict(self))
        return finite

    @property
    def gate_interval(self) -> tuple[str, Interval] | None:
        """The gate's estimator and interval: DR's where there is a reward model (its interval
        held the true rate in 92-96 % of simulated repetitions on MovieLens, where SNIPS's
        normal interval held it in 86-88 %: benchmarks/off_policy.py), else SNIPS's."""
        if self.estimate is None:
            return None
        if self.estimate.dr is not None:
            return "DR", self.estimate.dr
        return "SNIPS", self.estimate.snips


@dataclass
class _Accumulated:
    lists: list[int] = field(default_factory=list)
    logging: list[float] = field(default_factory=list)
    target: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    rating: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    unsupported: list[float] = field(default_factory=list)

    def add(
        self,
        shown: LoggedList,
        ranked: tuple[np.ndarray, np.ndarray, np.ndarray],
        target: ExplorePolicy,
        holdout: Holdout | None,
        reward_model: RewardModel | None,
        listable: _Listable,
    ) -> None:
        """One logged list: the target's probability of showing each of its items, the direct
        method's term, how much of the target's list lacks support, and the slots that count
        (those of the hash holdout, when there is one)."""
        rows, logits, ratings = ranked
        k = len(shown.items)
        n = len(self.size)
        self.size.append(k)
        inclusion = target.layout(logits, k).inclusion(len(logits))
        local = _local_positions(listable.judged, rows, shown.items)
        at = np.where(local >= 0, inclusion[np.maximum(local, 0)], 0.0)
        if reward_model is not None:
            self.direct.append(float(inclusion @ reward_model(ratings)))
        self.unsupported.append(_unsupported(shown, inclusion, local, rows, listable) / k)
        keep = np.ones(k, dtype=bool)
        share = 1.0
        if holdout is not None:
            share = holdout.share
            keep = pair_hash_of_ids([shown.user_id] * k, shown.items, holdout.seed) < share
        predicted = np.where(local >= 0, ratings[np.maximum(local, 0)], 0.0)
        for j in np.flatnonzero(keep):
            item = shown.items[j]
            self.lists.append(n)
            self.logging.append(shown.propensities[j] * share)
            self.target.append(float(at[j]))
            self.reward.append(float(item in shown.positive))
            self.rating.append(shown.rated.get(item, np.nan))
            self.predicted.append(float(predicted[j]))

    def slots(self, reward_model: RewardModel | None) -> Slots:
        """The accumulated slots as the estimators take them."""
        return Slots(
            lists=np.asarray(self.lists, dtype=np.int64),
            size=np.asarray(self.size, dtype=np.float64),
            logging=np.asarray(self.logging),
            target=np.asarray(self.target),
            reward=np.asarray(self.reward),
            predicted=None if reward_model is None else reward_model(np.asarray(self.predicted)),
            direct=None if reward_model is None else np.asarray(self.direct),
            unsupported=np.asarray(self.unsupported),
        )


def _ranked_then(
    candidate: Ranker, shown: LoggedList, logged: Logged, live: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The judged model's candidates for the list's user as they stood when it was served:
    what the user had rated by then is banned, what they rated later is not; with `live`
    (the judged policy serves live users, as `RECSYS_LIVE_USERS` does), the ratings between
    the newest one the judged model learned and the list move the user as they would have
    then. Only ratings are replayed: likes, clicks and dislikes folded into a live list are
    not in the ratings table, so lists moved by those are judged a little off."""
    if not shown.items:
        return None
    served = int(shown.served_at.timestamp())
    rated_at = logged.rated_at.get(shown.user_id, {})
    before = [item for item, when in rated_at.items() if when < served]
    since = None
    if live:
        learned = candidate.model.card.max_timestamp or 0
        values = logged.rated.get(shown.user_id, {})
        new = sorted((rated_at[i], i) for i in before if rated_at[i] > learned)
        since = ([i for _, i in new], [values[i] for _, i in new])
    return candidate.candidate_logits(
        shown.user_id,
        min_support=shown.min_support,
        exclude=before,
        live=since,
        demoted=shown.demoted,
    )


def _reward_model(logged: Logged) -> RewardModel | None:
    predicted, reward = [], []
    for shown in logged.lists:
        for item, value in zip(shown.items, shown.predicted, strict=True):
            if value is not None:
                predicted.append(float(value))
                reward.append(float(item in shown.positive))
    if len(set(reward)) < 2:
        return None  # nothing to learn a link from: DR is left out
    return RewardModel.fit(np.asarray(predicted), np.asarray(reward))


def _logging_rates(by_version: dict[str, list[tuple[int, float]]]) -> dict[str, Any]:
    """Each logging version's lists and observed positive rate (versions with 2+ lists)."""
    return {
        v: {"lists": len(rows), "positive_rate": asdict(_rate(rows))}
        for v, rows in by_version.items()
        if len(rows) > 1
    }


def _judged_on(holdout: Holdout | None, judged_on: str | None) -> str:
    """Which slots the estimate rests on, in words."""
    if holdout is not None:
        return (
            f"logged slots in the hash holdout ({holdout.share:.0%}), which the judged model "
            "never learned"
        )
    return judged_on or (
        "every logged slot (the judged model may have learned some of their answers)"
    )


def judge(
    candidate: Recommender,
    version: str,
    logged: Logged,
    target: ExplorePolicy,
    *,
    holdout: Holdout | None,
    logging_models: dict[str, Recommender] | None = None,
    clip: float = MAX_WEIGHT,
    max_unsupported: float = MAX_UNSUPPORTED,
    judged_on: str | None = None,
    live: bool = True,
) -> OffPolicyReport:
    """Off-policy estimates of `candidate` served with `target`, on `logged` traffic.

    `logging_models` (by version) say which items each logging model could have explored;
    without one, every candidate of the judged model is taken to have been in its pool.
    `live`: the judged policy moves learned users by their ratings since its training, as
    the service does with `RECSYS_LIVE_USERS` (`_ranked_then`)."""
    reward_model = _reward_model(logged)
    listable = _Listable(candidate, logging_models or {})
    lists = Ranker(candidate)
    skipped = dict(logged.skipped)
    acc = _Accumulated()
    on_policy_by: dict[str, list[tuple[int, float]]] = {}
    for shown in logged.lists:
        ranked = _ranked_then(lists, shown, logged, live)
        if ranked is None:
            reason = "the judged model never learned the user"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        on_policy_by.setdefault(shown.model_version, []).append(
            (len(shown.items), float(len(shown.positive)))
        )
        acc.add(shown, ranked, target, holdout, reward_model, listable)
    report = OffPolicyReport(
        version=version,
        target_policy=target.as_json(),
        judged_on=_judged_on(holdout, judged_on),
        lists=len(acc.size),
        skipped=skipped,
        estimate=None,
        refused=None,
        mean_rating=None,
        reward_model=reward_model,
        logging=_logging_rates(on_policy_by),
    )
    if len(acc.size) < 2:
        report.refused = "fewer than 2 logged lists to judge on"
        return report
    slots = acc.slots(reward_model)
    try:
        report.estimate = estimate(slots, clip=clip, max_unsupported=max_unsupported)
    except NoSupportError as exc:
        report.refused = str(exc)
        return report
    rating = np.asarray(acc.rating)
    rated = ~np.isnan(rating)
    if rated.any():
        report.mean_rating = rated_mean(slots, np.nan_to_num(rating), rated, clip)
    return report


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _rate(rows: list[tuple[int, float]]) -> Interval:
    size = np.array([k for k, _ in rows], dtype=np.float64)
    positives = np.array([p for _, p in rows])
    # One "slot" per list carrying its positives: the per-list rate is positives / k.
    return on_policy(np.arange(len(rows)), size, positives)


def _local_positions(rec: Recommender, rows: np.ndarray, item_ids: list[str]) -> np.ndarray:
    """Positions among the candidate rows of logged items (-1: not a candidate)."""
    wanted = rec.item_vocab.indices(item_ids)
    position = np.full(len(rec.item_vocab), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    return np.where(wanted == UNKNOWN, -1, position[np.maximum(wanted, 0)])


class _Listable:
    """Per (logging version, least support): which of the judged model's item rows the
    logging model could have listed (None: its artifact is not at hand)."""

    def __init__(self, judged: Recommender, logging_models: dict[str, Recommender]) -> None:
        self.judged, self.models = judged, logging_models
        self._masks: dict[tuple[str, int], np.ndarray | None] = {}

    def __call__(self, version: str, min_support: int) -> np.ndarray | None:
        key = (version, min_support)
        if key not in self._masks:
            model = self.models.get(version)
            mask = None
            if model is not None:
                their = model.item_vocab.indices(self.judged.item_vocab.ids)
                counts = model.item_counts[np.maximum(their, 0)]
                mask = (their != UNKNOWN) & (counts >= min_support)
            self._masks[key] = mask
        return self._masks[key]


def _unsupported(
    shown: LoggedList,
    inclusion: np.ndarray,
    local: np.ndarray,
    rows: np.ndarray,
    listable: _Listable,
) -> float:
    """How many of the target's slots (in expectation) go where the logging policy could not
    have shown anything: outside the logged list when it did not explore; when it did,
    outside what the logging model could list (too few ratings, or unknown to it)."""
    if not any(shown.explored):
        shown_mass = float(inclusion[local[local >= 0]].sum())
        return float(inclusion.sum()) - shown_mass
    mask = listable(shown.model_version, shown.min_support)
    return 0.0 if mask is None else float(inclusion[~mask[rows]].sum())
