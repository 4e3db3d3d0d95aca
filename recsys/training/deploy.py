"""The model that serves: both heads trained again on every rating, the test holdout included.

Evaluation needs ratings the model never learned, so the evaluated model (the "twin") leaves
the test holdout out; yet a model that never learns a tenth of the ratings serves everyone
worse. So the same recipe (the rating head's epoch count, the ranking heads chosen on
validation refit as the twin's are, the blend) is run again on all ratings, and that is what
serves once the twin is evaluated and gated. Its figures are the twin's: the registry
records both, and comparisons with production use production's twin, evaluated like the
candidate on ratings neither learned (recsys.jobs).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

from recsys.data.interactions import Interactions
from recsys.model.card import ServedRecord
from recsys.model.network import ChoiceNet, DotProductBias
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.beside import Beside, trains_beside
from recsys.training.choice import Ensemble
from recsys.training.distributed import World
from recsys.training.ranking import head_of, refit_heads
from recsys.training.trainer import Trainer, TrainResult


@dataclass(frozen=True)
class ServingNetworks:
    """Both heads of the model that serves, as trained on every rating."""

    rating: DotProductBias
    choice: ChoiceNet | None
    rating_epochs: int
    ranking_epochs: list[int]
    seconds: float


@dataclass(frozen=True)
class RatingFits:
    """The rating head: as selected on validation (`selected`, which never saw it), the
    evaluated twin's (refit on training + validation with `config.refit`, else the selected
    one), and the one that serves (trained on every rating; None without a serving refit)."""

    selected: TrainResult
    twin: TrainResult
    served: TrainResult | None


def rating_fits(
    trainer: Trainer,
    inner: Interactions,
    valid: Interactions,
    everything: Interactions | None,
    world: World | None = None,
    network: DotProductBias | None = None,
) -> Beside[RatingFits]:
    """The rating head's selection on `inner` with early stopping on `valid` (from
    `network`'s weights, a warm start, when given), then the twin's refit on `inner` + `valid`
    (from `network`'s weights too) and the serving refit on `everything` (None: none).

    The ranking head's selection needs none of it until it chooses its blend, so on small
    data in one process on the CPU all of it runs in a thread beside that selection, each
    stream on half the cores: a step of either keeps about 1.6 cores busy with all of them
    (`recsys.training.beside`). Only the selection's epochs are shown (interleaved with the
    ranking head's; each line says which head), the refits run silently. Otherwise it runs in
    the caller, in turn."""
    config = trainer.config
    n_ratings = len(everything) if everything is not None else len(inner) + len(valid)
    beside = trains_beside(n_ratings, config, world)
    fitter = Trainer(config, trainer.scale) if beside else trainer

    def run() -> RatingFits:
        start = copy.deepcopy(network) if network is not None else None
        selected = trainer.select(inner, valid, network=network, world=world)
        twin = fitter.refit(selected, inner, valid, network=start, world=world)
        served = None
        if everything is not None:
            served = fitter.train_for(everything, selected.best_epoch, world)
        return RatingFits(selected, twin, served)

    return Beside(run, beside=beside, name="rating-head", share_threads=True)


def serving_refit(
    data: Interactions,
    rating: TrainResult,
    ranking: Ensemble | None,
    config: TrainConfig,
    world: World | None = None,
    on_start: Callable[[], None] | None = None,
) -> Beside[ServingNetworks]:
    """The model that serves, once the ranking head is chosen: `rating`, the rating head
    trained on every rating of `data` already, and the `ranking` heads chosen on validation
    (None without a ranking head) refit on them as the twin's are (`refit_heads`). On small
    data in one process on the CPU (`trains_beside`) it runs in a thread of its own beside the
    evaluated twin's ranking refit and the evaluation, each with half of torch's threads.
    Otherwise, and under torchrun, it runs when its result is first asked."""

    def run() -> ServingNetworks:
        if on_start is not None:
            on_start()
        t0 = time.perf_counter()
        choice, ranking_epochs = None, list[int]()
        if ranking is not None:
            choice, ranking_epochs = refit_heads(ranking, data, config, world=world)
        seconds = rating.seconds + time.perf_counter() - t0
        epochs = len(rating.history)
        return ServingNetworks(rating.network, choice, epochs, ranking_epochs, seconds)

    beside = trains_beside(len(data), config, world)
    return Beside(run, beside=beside, name="serving-refit", share_threads=True)


def served_model(
    data: Interactions, twin: Recommender, networks: ServingNetworks, config: TrainConfig
) -> Recommender:
    """The model that serves, from the `networks` refit on all of `data` with `twin`'s
    recipe; its record is the twin's, with what the refit did."""
    ranking = None
    if networks.choice is not None and twin.ranking is not None:
        ranking = head_of(networks.choice, data, config, twin.ranking.blend)
    card = twin.card.model_copy(
        update={
            "served": ServedRecord(
                ratings=len(data),
                rating_epochs=networks.rating_epochs,
                ranking_epochs=networks.ranking_epochs if ranking is not None else None,
                seconds=networks.seconds,
            )
        },
        deep=True,
    )
    return Recommender.from_network(networks.rating, data, card, seen=data, ranking=ranking)
