"""From ratings to an evaluated model: split, train both heads, refit what serves, evaluate.

`fit` works on an `Interactions` alone (notebooks); `fit_across` is the same steps on every
rank of torchrun. `recsys.training.runs` adds the snapshot, the artifact and the registry
records (`recsys train`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.evaluation.baselines import Scorer
from recsys.evaluation.report import BaselineCache, Report, baseline_report
from recsys.model.card import RankingRecord
from recsys.model.network import ChoiceNet, DotProductBias
from recsys.model.ranking import RankingHead
from recsys.train_config import TrainConfig
from recsys.training.assess import Fitted, assess
from recsys.training.beside import Beside, fits_beside
from recsys.training.deploy import (
    RatingFits,
    ServingNetworks,
    rating_fits,
    served_model,
    serving_refit,
)
from recsys.training.distributed import World
from recsys.training.heap import keep_freed_memory
from recsys.training.ranking import Selection, head_of, refit_ranking, select_ranking
from recsys.training.splits import Splits, split
from recsys.training.trainer import EpochStats, Trainer

BASELINES_FOLDER = "baselines"
"""Where, under the artifact folder, the baselines' figures are kept per data (BaselineCache)."""


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
    keep_freed_memory()
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
    baselines = _baselines(parts, config, world, baseline_cache)
    with baselines or nullcontext():
        serves = config.serve_refit and _over_ranks(world, len(parts.test)) > 0
        everything = parts.data if serves else None
        rating = rating_fits(trainer, parts.inner, parts.valid, everything, world, network)
        with rating:
            if not rating.beside:
                rating.result()  # in turn: under torchrun every rank takes the same steps
            return _beside_rating_head(
                parts,
                rating,
                config,
                scale,
                started=t0,
                world=world,
                whole=whole,
                extra=extra,
                baselines=baselines,
                baseline_cache=baseline_cache,
                on_rank_epoch=on_rank_epoch,
                on_stage=on_stage,
            )


def _baselines(
    parts: Splits, config: TrainConfig, world: World | None, cache: BaselineCache | None
) -> Beside[Report] | None:
    """The baselines' figures on the test holdout, which need no model: on small data in one
    process, computed beside the training from its start (EASE's Cholesky and the rating
    head's steps share the cores better than either alone uses them). None under torchrun,
    where rank 0 evaluates on its full read after training, and without a test holdout."""
    if world is not None or not len(parts.test):
        return None

    def work() -> Report:
        return baseline_report(
            parts.train,
            parts.test,
            threshold=config.liked_threshold,
            k=config.top_k,
            seed=config.seed,
            ease_max_items=config.ease_max_items,
            cache=cache,
        )

    return Beside(work, beside=fits_beside(len(parts.data), world), name="baselines")


def _beside_rating_head(
    parts: Splits,
    rating: Beside[RatingFits],
    config: TrainConfig,
    scale: RatingScale,
    *,
    started: float,
    world: World | None = None,
    whole: Callable[[], tuple[Splits, Sequence[Scorer]]] | None = None,
    extra: Sequence[Scorer] = (),
    baselines: Beside[Report] | None = None,
    baseline_cache: BaselineCache | None = None,
    on_rank_epoch: Callable[[EpochStats], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Fitted | None:
    """Everything but the rating head (`rating`: its selection and refits, beside on small
    data), in one process or across the ranks of torchrun: the ranking head; the serving
    refit; the evaluation against the baselines on the test holdout (training `started` at
    that `time.perf_counter()`). With a `world`, `parts` is this rank's shard; rank 0 then
    reads `whole` (every rating, and the `extra` scorers of it) to build the user vectors,
    evaluate and assemble the models; the other ranks return None."""
    main = world is None or world.is_main
    stage = on_stage if on_stage is not None and main else (lambda _: None)
    t0 = time.perf_counter()
    on_epoch = on_rank_epoch if main else None

    def reclaiming(stats: EpochStats) -> None:
        rating.reclaim()  # the rating head beside may end before the selection
        if on_epoch is not None:
            on_epoch(stats)

    selection = _selection(
        parts, lambda: rating.result().selected.network, config, world, stage, reclaiming
    )
    fits = rating.result()
    serving = _serving_refit(parts, fits, selection, config, world, stage)
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
            fits.twin,
            config,
            scale,
            extra=extra,
            train_s=time.perf_counter() - started,
            ranking=ranking,
            baselines=baselines.result() if baselines is not None else None,
            baseline_cache=baseline_cache,
        )
        fitted.timings.update(rating_head_s=fits.twin.seconds, ranking_head_s=ranking_s)
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
    rating: Callable[[], DotProductBias],
    config: TrainConfig,
    world: World | None,
    stage: Callable[[str], None],
    on_epoch: Callable[[EpochStats], None] | None,
) -> Selection | None:
    """The ranking head chosen on validation (None without one, or without ratings), its
    blend with the rating head chosen with the one `rating` gives (selected on validation,
    which it never saw)."""
    if not config.ranking or not _over_ranks(world, len(parts.inner)):
        return None
    stage(
        f"ranking head: batches of {config.rank_batch_users:,} users, at most "
        f"{config.rank_epochs} epochs"
    )
    return select_ranking(parts.inner, parts.valid, rating, config, on_epoch=on_epoch, world=world)


def _serving_refit(
    parts: Splits,
    fits: RatingFits,
    selection: Selection | None,
    config: TrainConfig,
    world: World | None,
    stage: Callable[[str], None],
) -> Beside[ServingNetworks] | None:
    """The model that serves, both heads trained on every rating with the twin's recipe
    (`config.serve_refit`; None without a test holdout: the evaluated model has learned
    every rating already)."""
    if fits.served is None:
        return None
    n_all = _over_ranks(world, len(parts.data))
    return serving_refit(
        parts.data,
        fits.served,
        selection.ensemble if selection else None,
        config,
        world,
        on_start=lambda: stage(f"serving refit: both heads again on all {n_all:,} ratings"),
    )


def _over_ranks(world: World | None, n: int) -> int:
    """`n` summed over the ranks (as it is, in one process)."""
    return int(world.sum(n)[0]) if world is not None else n
