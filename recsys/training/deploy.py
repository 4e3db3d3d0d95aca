"""The model that serves: both heads trained again on every rating, the test holdout included.

Evaluation needs ratings the model never learned, so the evaluated model (the "twin") leaves
the test holdout out; yet a model that never learns a tenth of the ratings serves everyone
worse. So, once the twin is evaluated and gated, the same recipe (its epoch counts, its blend)
is run again on all ratings, and that is what serves. Its figures are the twin's: the registry
records both, and comparisons with production use production's twin, evaluated like the
candidate on ratings neither learned (recsys.jobs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from recsys.config import RatingScale, TrainConfig
from recsys.data.interactions import Interactions
from recsys.model.network import ChoiceNet, DotProductBias
from recsys.model.recommender import Recommender
from recsys.training.choice import ChoiceTrainer
from recsys.training.distributed import World
from recsys.training.ranking import head_of
from recsys.training.trainer import Trainer


@dataclass(frozen=True)
class ServingNetworks:
    """Both heads of the model that serves, as trained on every rating."""

    rating: DotProductBias
    choice: ChoiceNet | None
    rating_epochs: int
    ranking_epochs: list[int]
    seconds: float


def refit_networks(
    data: Interactions,
    rating_epochs: int,
    ranking_epochs: list[int],
    config: TrainConfig,
    scale: RatingScale,
    world: World | None = None,
) -> ServingNetworks:
    """The evaluated twin's recipe (its epoch counts: the rating head's, and one per ranking
    head, none without a ranking head) trained on every rating of `data`; under torchrun,
    `data` is this rank's shard and every rank returns the same networks."""
    t0 = time.perf_counter()
    rating = Trainer(config, scale).train_for(data, rating_epochs, world).network
    choice = None
    if ranking_epochs:
        nothing = data.subset(np.arange(0))
        ensemble = ChoiceTrainer(config, world=world).fit_ensemble(
            data, nothing, epochs=ranking_epochs
        )
        choice = ensemble.network
    return ServingNetworks(rating, choice, rating_epochs, ranking_epochs, time.perf_counter() - t0)


def served_model(
    data: Interactions, twin: Recommender, networks: ServingNetworks, config: TrainConfig
) -> Recommender:
    """The model that serves, from the `networks` refit on all of `data` with `twin`'s
    recipe; its record is the twin's, with what the refit did."""
    ranking = None
    if networks.choice is not None and twin.ranking is not None:
        ranking = head_of(networks.choice, data, config, twin.ranking.blend)
    info = {
        **twin.info,
        "served": {
            "refit_on_all": True,
            "ratings": len(data),
            "rating_epochs": networks.rating_epochs,
            "ranking_epochs": networks.ranking_epochs if ranking is not None else None,
            "seconds": networks.seconds,
            "note": "trained on every rating (test holdout included); metrics are those of "
            "the evaluated twin",
        },
    }
    return Recommender.from_network(networks.rating, data, info, seen=data, ranking=ranking)
