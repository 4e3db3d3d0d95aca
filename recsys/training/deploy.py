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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import torch

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.model.card import ServedRecord
from recsys.model.network import ChoiceNet, DotProductBias
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.choice import ChoiceTrainer
from recsys.training.distributed import World
from recsys.training.ranking import head_of
from recsys.training.trainer import Trainer, pick_device


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


BESIDE_MAX_RATINGS = 2_000_000
"""Up to this many ratings, in one process on the CPU, the serving refit runs in a thread of
its own beside the evaluated twin's refit and the evaluation (`ServingRefit`)."""


class ServingRefit:
    """`refit_networks` once its recipe is known; `result()` gives its networks.

    In one process on the CPU with at most BESIDE_MAX_RATINGS ratings it starts at once in a
    thread of its own, beside the caller's work (the evaluated twin's refit, the evaluation),
    each thread with half of torch's threads until the result is in: there a step's matrices
    are small, and two steps at once gain more than two threads on one (on MovieLens, with 2
    cores, the two ranking refits took 3.9 s side by side against 4.6 s one after the other;
    `recsys train` as a whole 1-2 s less). Otherwise, and under torchrun, whose ranks must
    take their collectives in the same order, it runs when `result()` is first asked.

    A context manager: leaving it waits for the thread (a refit is not left running after a
    failure) and gives the caller back its torch threads."""

    def __init__(
        self,
        data: Interactions,
        rating_epochs: int,
        ranking_epochs: list[int],
        config: TrainConfig,
        scale: RatingScale,
        world: World | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        def run() -> ServingNetworks:
            if on_start is not None:
                on_start()
            return refit_networks(data, rating_epochs, ranking_epochs, config, scale, world)

        self._run = run
        self._threads = torch.get_num_threads()
        self._share = max(1, self._threads // 2)
        self._future: Future[ServingNetworks] | None = None
        self._done: ServingNetworks | None = None
        self.beside = (
            world is None
            and len(data) <= BESIDE_MAX_RATINGS
            and pick_device(config.device).type == "cpu"
            and self._threads > 1
        )

    def __enter__(self) -> ServingRefit:
        if self.beside:
            pool = ThreadPoolExecutor(1, thread_name_prefix="serving-refit")
            self._future = pool.submit(self._half)
            pool.shutdown(wait=False)
            torch.set_num_threads(self._share)  # per thread: the caller's until the result is in
        return self

    def _half(self) -> ServingNetworks:
        torch.set_num_threads(self._share)
        return self._run()

    def result(self) -> ServingNetworks:
        if self._done is None:
            self._done = self._run() if self._future is None else self._future.result()
            torch.set_num_threads(self._threads)
        return self._done

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._future is not None:
            self._future.exception()  # waits; a failure of its own was raised by result()
        torch.set_num_threads(self._threads)


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
