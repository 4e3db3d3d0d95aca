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
from typing import Any

import numpy as np

from recsys.config import RatingScale, TrainConfig
from recsys.data.interactions import Interactions
from recsys.model.recommender import Recommender
from recsys.training.choice import ChoiceTrainer
from recsys.training.ranking import head_of
from recsys.training.trainer import Trainer


def refit_on_all(
    data: Interactions, twin: Recommender, config: TrainConfig, scale: RatingScale
) -> Recommender:
    """`twin`'s recipe trained on every rating of `data`."""
    t0 = time.perf_counter()
    rating_epochs = int(twin.info["best_epoch"])
    network = Trainer(config, scale).train_for(data, rating_epochs).network
    ranking, epochs = None, []
    record: dict[str, Any] | None = twin.info.get("ranking")
    if twin.ranking is not None and record is not None:
        # Records from before ensembles name one head's epoch only.
        epochs = [int(e) for e in record.get("member_epochs") or [record["best_epoch"]]]
        choice = ChoiceTrainer(config).fit_ensemble(data, data.subset(np.arange(0)), epochs=epochs)
        ranking = head_of(choice.network, data, config, twin.ranking.blend)
    info = {
        **twin.info,
        "served": {
            "refit_on_all": True,
            "ratings": len(data),
            "rating_epochs": rating_epochs,
            "ranking_epochs": epochs if ranking is not None else None,
            "seconds": time.perf_counter() - t0,
            "note": "trained on every rating (test holdout included); metrics are those of "
            "the evaluated twin",
        },
    }
    return Recommender.from_network(network, data, info, seen=data, ranking=ranking)
