"""Off-policy evaluation against the database and the registry: the CLI, the API and the
retraining job's gate all come through here."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from recsys import registry
from recsys.config import Settings
from recsys.data.split import HASH_HOLDOUT_SEED
from recsys.errors import ArtifactError, NotFoundError
from recsys.exploration import ExplorePolicy
from recsys.model import artifact
from recsys.model.recommender import Recommender
from recsys.offpolicy.judge import Holdout, OffPolicyReport, judge
from recsys.store.db import session_scope
from recsys.store.logged import Logged, load_logged


def _learned_none(judged: Recommender, since: datetime | None) -> bool:
    """Whether `judged`'s training data ends before the window starts: it learned none of the
    answers to the lists logged since."""
    newest = judged.card.max_timestamp
    return since is not None and newest is not None and newest < since.timestamp()


def holdout_of(judged: Recommender, since: datetime | None = None) -> Holdout | None:
    """Which logged slots may judge `judged`: None (all of them) when it learned none of
    their answers; else the hash holdout it never learned, where its config held one out
    (None otherwise: the estimate then rests partly on answers it learned, and the report
    says so)."""
    if _learned_none(judged, since):
        return None
    config = judged.card.config
    if config is None or config.split != "hash" or config.test_fraction <= 0:
        return None
    return Holdout(HASH_HOLDOUT_SEED, config.test_fraction)


def _logging_models(engine: Engine, logged: Logged) -> dict[str, Recommender]:
    """The served artifacts of the versions that logged the lists, where still loadable."""
    out = {}
    for version in {x.model_version for x in logged.lists}:
        try:
            row = registry.get_version(engine, version)
            out[version] = artifact.load(Path(row["artifact_path"]), row["checksum"])
        except (NotFoundError, ArtifactError):
            continue
    return out


def load_traffic(engine: Engine, settings: Settings, since: datetime | None) -> Logged:
    with session_scope(engine) as s:
        return load_logged(session=s, since=since, liked_threshold=settings.liked_threshold)


def judge_twin(
    engine: Engine,
    settings: Settings,
    judged: Recommender,
    version: str,
    logged: Logged,
    since: datetime | None,
    target: ExplorePolicy | None = None,
) -> OffPolicyReport:
    """`judged` (an evaluated twin, or a model that serves itself) on `logged` traffic, the
    lists served since `since`."""
    clean = _learned_none(judged, since)
    return judge(
        judged,
        version,
        logged,
        target or settings.explore_policy,
        holdout=holdout_of(judged, since),
        logging_models=_logging_models(engine, logged),
        judged_on="every logged slot: the judged model's data ends before the window"
        if clean
        else None,
        live=settings.live_users,
    )


def off_policy_report(
    engine: Engine,
    settings: Settings,
    version: str | None,
    since: datetime | None,
    target: ExplorePolicy | None = None,
) -> OffPolicyReport:
    """A registered version (its evaluated twin) judged on the traffic logged since a time."""
    row = registry.resolve(engine, version)
    folder = Path(row["artifact_path"])
    judged = artifact.load_twin(folder, artifact.load(folder, row["checksum"]))
    logged = load_traffic(engine, settings, since)
    return judge_twin(engine, settings, judged, row["version"], logged, since, target)


def off_policy_gate(
    report: OffPolicyReport, production: str, settings: Settings
) -> tuple[list[str], dict[str, Any]]:
    """(reasons to refuse the candidate, what was compared). The gate applies only when the
    estimate rests on enough traffic (effective sample size at least
    RECSYS_GATE_OPE_MIN_ESS) and production logged lists of its own in the window."""
    own = report.logging.get(production)
    found = report.estimate
    judged = report.gate_interval
    info: dict[str, Any] = {
        "applied": False,
        "estimator": None if judged is None else judged[0],
        "candidate_rate": None if judged is None else judged[1].value,
        "candidate_low": None if judged is None else judged[1].low,
        "effective_sample_size": None if found is None else found.effective_sample_size,
        "production_rate": None if own is None else own["positive_rate"]["value"],
        "refused": report.refused,
    }
    if (
        found is None
        or judged is None
        or own is None
        or found.effective_sample_size < settings.gate_ope_min_ess
    ):
        info["why_not"] = (
            report.refused
            or ("production logged no lists in the window" if own is None else None)
            or f"effective sample size {found.effective_sample_size if found else 0:.0f} "
            f"below {settings.gate_ope_min_ess:g} (RECSYS_GATE_OPE_MIN_ESS)"
        )
        return [], info
    info["applied"] = True
    rate = float(own["positive_rate"]["value"])
    name, interval = judged
    if interval.low < rate - settings.gate_ope_tolerance:
        return [
            f"off-policy: the positive rate's lower bound {interval.low:.4f} ({name}, 95 %) is "
            f"below production's observed {rate:.4f} by more than "
            f"{settings.gate_ope_tolerance} (RECSYS_GATE_OPE_TOLERANCE)"
        ], info
    return [], info


def verdict(report: OffPolicyReport, production: str | None, settings: Settings) -> dict[str, str]:
    """What the figures support, in words: `call` is "better", "worse", "no clear
    difference" (the interval holds production's observed rate) or "not enough evidence",
    against the positive rate production observed on its own lists; `why` says on what."""
    if production is None:
        return {"call": "not enough evidence", "why": "there is no production model to compare"}
    if report.version == production:
        return {
            "call": "reference",
            "why": "this is production: its observed rate is what others are compared with",
        }
    _, info = off_policy_gate(report, production, settings)
    if not info["applied"]:
        why = f"no comparison with production {production}: {info['why_not']}"
        return {"call": "not enough evidence", "why": why}
    judged = report.gate_interval
    assert judged is not None  # applied: there is an estimate
    name, interval = judged
    rate = float(info["production_rate"])
    where = (
        f"{name} {interval.value:.4f}, 95 % interval [{interval.low:.4f}, {interval.high:.4f}], "
        f"against production's observed {rate:.4f} positive answers per slot"
    )
    if interval.low > rate:
        return {"call": "better", "why": f"{where}: the whole interval lies above it"}
    if interval.high < rate:
        return {"call": "worse", "why": f"{where}: the whole interval lies below it"}
    return {"call": "no clear difference", "why": f"{where}: the interval holds it"}
