"""From ratings to an evaluated model: split, train both heads, refit what serves, evaluate.

`fit` works on an `Interactions` alone (notebooks); `fit_across` is the same steps on every
rank of torchrun. `recsys.training.runs` adds the snapshot, the artifact and the registry
records (`recsys train`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.data.snapshot import fingerprint
from recsys.data.split import HASH_HOLDOUT_SEED, HASH_VALIDATION_SEED, holdout, holdout_mask
from recsys.evaluation.baselines import Scorer
from recsys.evaluation.gates import GateCheck, baseline_checks, beats_baselines
from recsys.evaluation.report import BaselineCache, Report, evaluate
from recsys.model.card import DataCounts, ModelCard, RankingRecord
from recsys.model.network import ChoiceNet, DotProductBias
from recsys.model.ranking import RankingHead
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.deploy import ServingNetworks, ServingRefit, served_model
from recsys.training.distributed import World
from recsys.training.ranking import Selection, head_of, refit_ranking, select_ranking
from recsys.training.trainer import EpochStats, Trainer, TrainResult

BASELINES_FOLDER = "baselines"
"""Where, under the artifact folder, the baselines' figures are kept per data (BaselineCache)."""


@dataclass
class Fitted:
    recommender: Recommender
    result: TrainResult
    report: Report | None
    data: Interactions
    test_mask: np.ndarray
    """The test holdout among `data`."""
    test: Interactions
    timings: dict[str, float]
    config: TrainConfig
    """What it was trained and is judged with (the gates' k and ratios)."""
    served: Recommender | None = None
    """The model that serves, refit on every rating (`TrainConfig.serve_refit`); None: the
    evaluated `recommender` serves itself."""

    @property
    def train(self) -> Interactions:
        """Everything but the test holdout, made when asked: a copy of most of the ratings
        is not kept through the serving refit, where it set the peak memory at 25M ratings."""
        return self.data.subset(~self.test_mask)

    @property
    def report_json(self) -> dict[str, Any] | None:
        """The evaluation report as the registry and the card keep it."""
        return self.report.to_json() if self.report else None

    @property
    def deployed(self) -> Recommender:
        return self.served or self.recommender

    @property
    def gate(self) -> dict[str, Any]:
        if self.report is None:
            return {"passed": True, "reasons": ["no test split: nothing to compare"]}
        c = self.config
        return beats_baselines(self.report, c.top_k, c.min_ndcg_vs_popular, c.min_ndcg_vs_ease)

    @property
    def checks(self) -> list[GateCheck]:
        """The baselines' gates (`baseline_checks`); none without a test split."""
        if self.report is None:
            return []
        c = self.config
        return baseline_checks(self.report, c.top_k, c.min_ndcg_vs_popular, c.min_ndcg_vs_ease)


@dataclass(frozen=True)
class Splits:
    data: Interactions
    test_mask: np.ndarray  # the test holdout among `data`
    test: Interactions
    inner: Interactions  # the training part without validation: what the network learns
    valid: Interactions  # watched by early stopping

    @property
    def train(self) -> Interactions:
        """Everything but the test holdout. Built when asked (for evaluation), not kept
        during training, where a copy of most of the data would raise the peak memory."""
        return self.data.subset(~self.test_mask)


def split(data: Interactions, config: TrainConfig) -> Splits:
    """The test holdout, then a validation part carved from the rest.

    Hash splits take fixed seeds: the same pairs whatever the training seed, so any two
    models can be compared on the test pairs, and a model warm-started from an earlier one is
    not validated on ratings that the earlier one learned (early stopping would be fooled).
    A hash split of a shard is the same as the shard of the hash split, which is what lets
    distributed ranks split their shards on their own.
    """
    hashed = config.split == "hash"
    test_seed = HASH_HOLDOUT_SEED if hashed else config.seed
    held = holdout_mask(data, config.test_fraction, method=config.split, seed=test_seed)
    val_seed = HASH_VALIDATION_SEED if hashed else config.seed + 1
    inner, valid = holdout(
        data.subset(~held), config.val_fraction, method=config.split, seed=val_seed
    )
    return Splits(data, held, data.subset(held), inner, valid)


def fit(
    data: Interactions,
    config: TrainConfig | None = None,
    scale: RatingScale | None = None,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_rank_epoch: Callable[[EpochStats], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    extra: Sequence[Scorer] = (),
    network: DotProductBias | None = None,
    baseline_cache: BaselineCache | None = None,
) -> Fitted:
    """Split `data`, train with early stopping, evaluate against the baselines (and `extra`
    scorers, such as the production model, on the same holdout). `network` starts training
    from given weights (warm start) instead of a fresh initialisation.

    The test split is held out from everything; early stopping watches a validation split
    carved from the training part, so the test metrics are not tuned on.
    """
    fitted = fit_across(
        data,
        config or TrainConfig(),
        scale or RatingScale(),
        on_epoch=on_epoch,
        on_step=on_step,
        on_rank_epoch=on_rank_epoch,
        on_stage=on_stage,
        extra=extra,
        network=network,
        baseline_cache=baseline_cache,
    )
    assert fitted is not None  # one process is rank 0
    return fitted


def fit_across(
    data: Interactions,
    config: TrainConfig,
    scale: RatingScale,
    *,
    world: World | None = None,
    whole: Callable[[], tuple[Splits, Sequence[Scorer]]] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_rank_epoch: Callable[[EpochStats], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    extra: Sequence[Scorer] = (),
    network: DotProductBias | None = None,
    baseline_cache: BaselineCache | None = None,
) -> Fitted | None:
    """`fit` in one process, or on every rank of torchrun with `data` this rank's shard (whole
    users, the vocabulary all ranks agreed on): the same steps, the same sizes (sized for all
    ranks' ratings together, so the global batch is what one process would take). Rank 0
    then reads `whole` to evaluate and returns the model; the other ranks return None."""
    main = world is None or world.is_main
    n_ratings = _over_ranks(world, len(data))
    config = config.sized_for(n_ratings, data.n_users)
    scale.check_liked(config.liked_threshold)
    stage = on_stage if on_stage is not None and main else (lambda _: None)
    t0 = time.perf_counter()
    parts = split(data, config)
    where = f"on {world.size} ranks, " if world is not None else ""
    stage(
        f"rating head: {where}{_over_ranks(world, len(parts.inner)):,} ratings, batches of "
        f"{config.batch_size:,}, at most {config.epochs} epochs"
    )
    trainer = Trainer(
        config, scale, on_epoch=on_epoch if main else None, on_step=on_step if main else None
    )
    result = trainer.fit(parts.inner, parts.valid, network=network, world=world)
    return after_rating_head(
        parts,
        result,
        config,
        scale,
        rating_s=time.perf_counter() - t0,
        world=world,
        whole=whole,
        extra=extra,
        baseline_cache=baseline_cache,
        on_rank_epoch=on_rank_epoch,
        on_stage=on_stage,
    )


def after_rating_head(
    parts: Splits,
    result: TrainResult,
    config: TrainConfig,
    scale: RatingScale,
    *,
    rating_s: float,
    world: World | None = None,
    whole: Callable[[], tuple[Splits, Sequence[Scorer]]] | None = None,
    extra: Sequence[Scorer] = (),
    baseline_cache: BaselineCache | None = None,
    on_rank_epoch: Callable[[EpochStats], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Fitted | None:
    """Everything after the rating head (which took `rating_s`), in one process or across
    the ranks of torchrun: the ranking head; the serving refit of both heads on every rating;
    the evaluation against the baselines on the test holdout. With a `world`, `parts` is this
    rank's shard; rank 0 then reads `whole` (every rating, and the `extra` scorers of it) to
    build the user vectors, evaluate and assemble the models; the other ranks return None."""
    main = world is None or world.is_main
    stage = on_stage if on_stage is not None and main else (lambda _: None)
    t0 = time.perf_counter()
    on_epoch = on_rank_epoch if main else None
    selection = _selection(parts, result, config, world, stage, on_epoch)
    serving = _serving_refit(parts, result, selection, config, scale, world, stage)
    with serving or nullcontext():
        trained = None
        if selection is not None:
            inner, valid = parts.inner, parts.valid
            trained = refit_ranking(selection, inner, valid, config, on_epoch=on_epoch, world=world)
        ranking_s = time.perf_counter() - t0
        if serving is not None and not serving.beside:
            # Its turn, as before the evaluation: under torchrun its collectives come before
            # the ranks part, and at scale its memory and the evaluation's do not add up.
            serving.result()
        if world is not None:
            world.part()  # the last collective: what follows is rank 0's alone
        if not main:
            return None
        if world is not None:
            assert whole is not None, "rank 0 reads every rating to evaluate"
            parts, extra = whole()
        ranking = None if trained is None else _ranking_head(trained, parts, config)
        stage("evaluation against the baselines")
        fitted = assess(
            parts.data,
            parts,
            result,
            config,
            scale,
            extra=extra,
            train_s=rating_s + ranking_s,
            ranking=ranking,
            baseline_cache=baseline_cache,
        )
        fitted.timings.update(rating_head_s=rating_s, ranking_head_s=ranking_s)
        if serving is not None:
            _serve(fitted, serving.result())
    return fitted


def _ranking_head(
    trained: tuple[ChoiceNet, float, RankingRecord], parts: Splits, config: TrainConfig
) -> tuple[RankingHead, RankingRecord]:
    """The refit ranking network as the twin's head, its users' vectors from what it learned."""
    network, blend, record = trained
    learned = parts.inner.concat(parts.valid) if config.refit else parts.inner
    return head_of(network, learned, config, blend), record


def _serve(fitted: Fitted, networks: ServingNetworks) -> None:
    """Give `fitted` the model that serves: `networks`, refit on every rating, with the
    evaluated twin's record and figures."""
    fitted.served = served_model(fitted.data, fitted.recommender, networks, fitted.config)
    fitted.served.card.metrics = fitted.report_json
    fitted.timings["serve_refit_s"] = networks.seconds


def _selection(
    parts: Splits,
    result: TrainResult,
    config: TrainConfig,
    world: World | None,
    stage: Callable[[str], None],
    on_epoch: Callable[[EpochStats], None] | None,
) -> Selection | None:
    """The ranking head chosen on validation (None without one, or without ratings)."""
    if not config.ranking or not _over_ranks(world, len(parts.inner)):
        return None
    stage(
        f"ranking head: batches of {config.rank_batch_users:,} users, at most "
        f"{config.rank_epochs} epochs"
    )
    rating = result.selected or result.network
    return select_ranking(parts.inner, parts.valid, rating, config, on_epoch=on_epoch, world=world)


def _serving_refit(
    parts: Splits,
    result: TrainResult,
    selection: Selection | None,
    config: TrainConfig,
    scale: RatingScale,
    world: World | None,
    stage: Callable[[str], None],
) -> ServingRefit | None:
    """The refit of both heads on every rating, with the twin's recipe (`config.serve_refit`;
    None without a test holdout: the evaluated model has learned every rating already)."""
    if not config.serve_refit or not _over_ranks(world, len(parts.test)):
        return None
    n_all = _over_ranks(world, len(parts.data))
    return ServingRefit(
        parts.data,
        result.best_epoch,
        selection.epochs if selection else [],
        config,
        scale,
        world,
        on_start=lambda: stage(f"serving refit: both heads again on all {n_all:,} ratings"),
    )


def _over_ranks(world: World | None, n: int) -> int:
    """`n` summed over the ranks (as it is, in one process)."""
    return int(world.sum(n)[0]) if world is not None else n


def assess(
    data: Interactions,
    parts: Splits,
    result: TrainResult,
    config: TrainConfig,
    scale: RatingScale,
    *,
    extra: Sequence[Scorer] = (),
    train_s: float,
    ranking: tuple[RankingHead, RankingRecord] | None = None,
    baseline_cache: BaselineCache | None = None,
) -> Fitted:
    """The trained network as a `Recommender` with its record, evaluated on the test split."""
    t1 = time.perf_counter()
    card = ModelCard(
        config=config,
        rating_scale=scale,
        best_epoch=result.best_epoch,
        history=result.history_dicts(),
        refit=asdict(result.refit) if result.refit else None,
        data=DataCounts(
            ratings=len(data),
            users=data.n_users,
            items=data.n_items,
            train=len(parts.inner),
            valid=len(parts.valid),
            test=len(parts.test),
            fingerprint=fingerprint(data),
            max_timestamp=data.max_timestamp,
        ),
        device=result.device,
        samples_per_second=result.samples_per_second,
        ranking=ranking[1] if ranking else None,
    )
    rec = Recommender.from_network(
        result.network, parts.inner, card, seen=data, ranking=ranking[0] if ranking else None
    )
    report = None
    if len(parts.test):
        report = evaluate(
            rec,
            parts.train,
            parts.test,
            threshold=config.liked_threshold,
            k=config.top_k,
            seed=config.seed,
            extra=extra,
            ease_max_items=config.ease_max_items,
            cache=baseline_cache,
        )
    rec.card.metrics = report.to_json() if report else None
    timings = {"train_s": train_s, "evaluate_s": time.perf_counter() - t1}
    return Fitted(rec, result, report, data, parts.test_mask, parts.test, timings, config)
