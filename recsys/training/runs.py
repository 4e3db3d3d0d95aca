"""A training run against the database: snapshot (or this rank's shard), fit, save the
artifact, register the version, and let the gates decide what becomes of it.

`recsys train`, `recsys train --distributed` and tests go through `train_and_register`;
`recsys.jobs` (the nightly retrain) reuses `production_twin` and `record_fitted`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Engine

from recsys import registry
from recsys.config import RatingScale, Settings
from recsys.data.interactions import Interactions
from recsys.data.snapshot import training_snapshot
from recsys.errors import ArtifactError
from recsys.evaluation.baselines import Scorer
from recsys.evaluation.gates import (
    PRODUCTION_GATE,
    PROMOTED,
    Decision,
    GateCheck,
    decide,
    production_checks,
)
from recsys.evaluation.remap import remap
from recsys.evaluation.report import BaselineCache
from recsys.model import artifact
from recsys.model.card import TwinLink
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.assess import Fitted
from recsys.training.distributed import World
from recsys.training.pipeline import BASELINES_FOLDER, fit_across
from recsys.training.shards import read_shard
from recsys.training.splits import Splits, split
from recsys.training.trainer import EpochStats


class Production(NamedTuple):
    """Production as a retrain meets it: its registry row, its served model and its evaluated
    twin as a scorer of the data's rows (all None without production)."""

    row: Any
    served: Recommender | None
    twin: Scorer | None
    unread: GateCheck | None = None
    """Where production's artifact could not be read: the not-applied check that says so."""


def production_twin(engine: Engine, data: Interactions) -> Production:
    """Production and its evaluated twin (`Production`). Like with like: the twin, like a
    candidate, never learned the hash holdout; the served model refit on all ratings did.

    An artifact that is gone or damaged leaves the services that loaded it serving it, but it
    cannot be compared with: the candidate is then judged against the baselines alone, and
    the report says why: a production that no replica could load again is replaced by the
    next candidate that passes the other gates, not kept by every retrain failing on it."""
    production = registry.production(engine)
    if production is None:
        return Production(None, None, None)
    folder = Path(production["artifact_path"])
    try:
        served = artifact.load(folder, production["checksum"])
        twin = artifact.load_twin(folder, served)
    except ArtifactError as exc:
        detail = (
            f"production {production['version']} could not be read ({exc}): the candidate "
            "was compared with the baselines only"
        )
        return Production(production, None, None, GateCheck(PRODUCTION_GATE, None, detail))
    return Production(production, served, remap(twin, data, name="production"))


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: int
    path: Path
    fitted: Fitted
    decision: Decision
    """Its gates' checks and what they decided (`recsys.evaluation.gates.decide`)."""

    @property
    def promoted(self) -> bool:
        return self.decision.action == PROMOTED


def train_from_database(
    engine: Engine,
    artifact_dir: Path,
    config: TrainConfig,
    scale: RatingScale,
    *,
    promote: bool = True,
    settings: Settings | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_rank_epoch: Callable[[EpochStats], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Registered:
    """Snapshot, fit, save the artifact, record the run and the version.

    With `promote`, a model that beats the baselines, and production's evaluated twin on the
    same holdout (within `settings`' tolerances), becomes production; one that does not is
    registered as rejected, with the reasons, and production stays as it was. A manual run
    that beat only the baselines had replaced a better production model.
    """
    registered = train_and_register(
        engine,
        artifact_dir,
        config,
        scale,
        promote=promote,
        settings=settings,
        on_epoch=on_epoch,
        on_step=on_step,
        on_rank_epoch=on_rank_epoch,
        on_stage=on_stage,
    )
    assert registered is not None  # one process is rank 0
    return registered


def train_and_register(
    engine: Engine,
    artifact_dir: Path,
    config: TrainConfig,
    scale: RatingScale,
    *,
    world: World | None = None,
    promote: bool = True,
    settings: Settings | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_rank_epoch: Callable[[EpochStats], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Registered | None:
    """`train_from_database` in one process, or on every rank of torchrun (`world`): each
    rank reads its shard (`recsys.training.shards`), the ranks train together through
    `fit_across`, and rank 0 evaluates, saves and registers (the other ranks return None).
    Progress callbacks are called on rank 0 only."""
    settings = settings or Settings()
    main = world is None or world.is_main
    stage = on_stage if on_stage is not None and main else (lambda _: None)
    # Rank 0 keeps the run's record; the others report through it.
    run: AbstractContextManager[int] = (
        registry.training_run(engine, config.model_dump()) if main else nullcontext(0)
    )
    with run as run_id:
        t0 = time.perf_counter()
        read = _read(engine, config, world, promote)
        snapshot_s = time.perf_counter() - t0
        stage(f"snapshot: {read.what} in {snapshot_s:.1f}s")
        fitted = fit_across(
            read.data,
            config,
            scale,
            world=world,
            whole=read.whole,
            on_epoch=on_epoch,
            on_step=on_step,
            on_rank_epoch=on_rank_epoch,
            on_stage=on_stage,
            extra=read.extra,
            baseline_cache=BaselineCache(artifact_dir / BASELINES_FOLDER),
        )
        if fitted is None:
            return None
        timings = {"snapshot_s": snapshot_s}
        if world is not None:
            timings["ranks"] = float(world.size)
            for model in (fitted.recommender, fitted.served):
                if model is not None and model.card.data is not None:
                    model.card.data.shards = read.shard_sizes
        return register(
            engine, artifact_dir, fitted, run_id, promote, timings, settings, notes=read.unread
        )


@dataclass(frozen=True)
class _Read:
    data: Interactions
    """Every rating, or this rank's shard."""
    what: str
    extra: Sequence[Scorer] = ()
    """Production's evaluated twin, to compare with on the same holdout (one process)."""
    whole: Callable[[], tuple[Splits, Sequence[Scorer]]] | None = None
    """Rank 0's full read with production's twin (torchrun)."""
    shard_sizes: list[int] | None = None
    unread: list[GateCheck] = field(default_factory=list)
    """Production's artifact could not be read (`Production.unread`), once it was read."""


def _read(engine: Engine, config: TrainConfig, world: World | None, promote: bool) -> _Read:
    unread: list[GateCheck] = []

    def production(data: Interactions) -> list[Scorer]:
        if not promote:
            return []
        found = production_twin(engine, data)
        if found.unread is not None:
            unread.append(found.unread)
        return [found.twin] if found.twin is not None else []

    if world is None:
        data = training_snapshot(engine, config.split)
        return _Read(data, repr(data), extra=production(data), unread=unread)
    read = read_shard(engine, world)

    def whole() -> tuple[Splits, Sequence[Scorer]]:
        everything = read.whole()
        return split(everything, config), production(everything)

    what = f"{world.size} shards of whole users, {read.sizes} ratings"
    return _Read(read.local, what, whole=whole, shard_sizes=read.sizes, unread=unread)


def register(
    engine: Engine,
    artifact_dir: Path,
    fitted: Fitted,
    run_id: int,
    promote: bool,
    timings: dict[str, float],
    settings: Settings | None = None,
    *,
    notes: Sequence[GateCheck] = (),
) -> Registered:
    """Save and record a fitted model; promote it when asked and it beats the baselines and,
    where the report has production's row, production (by `settings`' tolerances). `notes`:
    checks not applied, recorded with the decision (production's unreadable artifact)."""
    checks = [*fitted.checks, *notes]
    if fitted.report is not None and settings is not None:
        checks = [*checks, *production_checks(fitted.report, settings, fitted.config.top_k)]
    decided = decide(checks, promote=promote)
    gate = {**fitted.gate, **decided.as_json()}  # with the baselines' warnings
    version, path = record_fitted(
        engine,
        artifact_dir,
        fitted,
        run_id=run_id,
        status=decided.status,
        metrics={"report": fitted.report_json, "gate": gate},
        timings=timings,
    )
    if decided.action == PROMOTED:
        # Just saved and verified: no second artifact check.
        actor = registry.Actor("recsys train", "beat the baselines and production")
        registry.promote(engine, version, check=False, actor=actor)
    return Registered(version, run_id, path, fitted, decided)


def record_fitted(
    engine: Engine,
    artifact_dir: Path,
    fitted: Fitted,
    *,
    run_id: int,
    status: str,
    metrics: dict[str, Any],
    timings: dict[str, float],
) -> tuple[str, Path]:
    """Save the artifact, register the version with `status`, close the training run."""
    version = registry.new_version_name()
    # The ranking head's record (its learning curve, blend) travels with the version's
    # metrics, so the dashboard can draw it beside the rating head's.
    ranking = fitted.recommender.card.ranking
    metrics = {**metrics, "ranking": ranking.model_dump(mode="json") if ranking else None}
    t0 = time.perf_counter()
    served = fitted.deployed
    if fitted.served is not None:
        # The evaluated twin is kept beside the served model: the next retrain compares its
        # candidate with it, on ratings neither learned.
        twin_path, twin_checksum = artifact.save(
            fitted.recommender, artifact_dir, f"{version}{artifact.TWIN_SUFFIX}"
        )
        served.card.evaluated_twin = TwinLink(artifact=twin_path.name, checksum=twin_checksum)
    path, checksum = artifact.save(served, artifact_dir, version)
    timings = {**timings, **fitted.timings, "save_s": time.perf_counter() - t0}
    registry.register_version(
        engine,
        version=version,
        run_id=run_id,
        artifact_path=str(path.resolve()),
        checksum=checksum,
        metrics=metrics,
        status=status,
    )
    registry.finish_run(
        engine,
        run_id,
        status="succeeded",
        history=fitted.result.history_dicts(),
        best_epoch=fitted.result.best_epoch,
        metrics=fitted.report_json,
        data_counts=fitted.recommender.card.data_json(),
        timings=timings,
    )
    return version, path
