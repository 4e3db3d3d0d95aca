"""First visits in hand ranked together: the batcher on a real recommender and event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from recsys.data.interactions import Interactions
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest, Ranking, RankingKey
from recsys.model.network import DotProductBias
from recsys.model.recommender import Recommender
from service.batching import RankingBatcher
from service.metrics import ServiceMetrics


class Counted(Ranker):
    """A list-maker that remembers how many keys each `rank_many` call ranked."""

    def __init__(self, model: Recommender) -> None:
        super().__init__(model)
        self.calls: list[int] = []

    def rank_many(self, keys: Sequence[RankingKey]) -> list[Ranking]:
        self.calls.append(len(keys))
        return super().rank_many(keys)


def _model() -> Counted:
    rng = np.random.default_rng(4)
    data = Interactions.from_arrays(
        rng.integers(0, 40, 4000), rng.integers(0, 300, 4000), rng.uniform(1, 5, 4000)
    )
    net = DotProductBias(
        data.n_users, data.n_items, 8, (0.0, 5.5), init_std=1.0, generator=torch.manual_seed(1)
    )
    return Counted(Recommender.from_network(net, data))


def _keys(rec: Ranker, n: int, k: int = 10) -> list[RankingKey]:
    keys = [
        rec.ranking_key(user, ListRequest(k))
        for user in rec.model.user_vocab.ids_of(list(range(n)))
    ]
    assert all(key is not None for key in keys)
    return [key for key in keys if key is not None]


def _batch_sizes(metrics: ServiceMetrics) -> tuple[float, float]:
    """(batches, users) the histogram has seen."""
    count = metrics.registry.get_sample_value("recsys_ranking_batch_size_count") or 0.0
    total = metrics.registry.get_sample_value("recsys_ranking_batch_size_sum") or 0.0
    return count, total


def test_requests_in_hand_are_ranked_in_one_product() -> None:
    rec, metrics = _model(), ServiceMetrics()
    batcher = RankingBatcher(metrics)
    keys = _keys(rec, 20)

    async def requests() -> list[Ranking]:
        return await asyncio.gather(*(batcher.ranking(rec, key) for key in keys))

    together = asyncio.run(requests())
    assert rec.calls == [20]
    assert _batch_sizes(metrics) == (1.0, 20.0)
    for key, ranking in zip(keys, together, strict=True):
        alone = rec.rank_many([key])[0]
        assert ranking.rows.tolist() == alone.rows.tolist()
        assert ranking.scores == pytest.approx(alone.scores, rel=1e-6, abs=1e-5)
    # One request alone (an idle service) is a batch of one.
    alone_in_hand = asyncio.run(batcher.ranking(rec, keys[0]))
    assert len(alone_in_hand.rows) == keys[0].depth
    assert rec.calls[-1] == 1


def test_a_batch_is_cut_at_its_bound_and_each_model_ranks_its_own() -> None:
    rec, other, metrics = _model(), _model(), ServiceMetrics()
    batcher = RankingBatcher(metrics, max_size=8)
    keys = _keys(rec, 20)

    async def requests() -> list[Ranking]:
        mine = [batcher.ranking(rec, key) for key in keys]
        theirs = [batcher.ranking(other, key) for key in keys[:3]]
        return await asyncio.gather(*mine, *theirs)

    answers = asyncio.run(requests())
    assert rec.calls == [8, 8, 4]
    assert other.calls == [3]
    assert len(answers) == 23
    assert _batch_sizes(metrics) == (4.0, 23.0)


def test_a_failed_ranking_reaches_every_request_of_its_batch() -> None:
    rec, metrics = _model(), ServiceMetrics()
    batcher = RankingBatcher(metrics)
    good = _keys(rec, 2)
    # A row the model does not have: numpy's IndexError, as any fault in the product would.
    bad = RankingKey(10**6, 1, False, 10)

    async def requests() -> list[Ranking | BaseException]:
        calls = [batcher.ranking(rec, key) for key in [*good, bad]]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(requests())
    assert all(isinstance(answer, IndexError) for answer in answers)
    # The batcher is not stuck: the next request is answered.
    assert len(asyncio.run(batcher.ranking(rec, good[0])).rows) == 10


def test_a_request_cancelled_while_waiting_leaves_the_others_answered() -> None:
    rec, metrics = _model(), ServiceMetrics()
    batcher = RankingBatcher(metrics)
    keys = _keys(rec, 3)

    async def requests() -> list[Ranking | BaseException]:
        tasks = [asyncio.create_task(batcher.ranking(rec, key)) for key in keys]
        await asyncio.sleep(0)  # every task is waiting for the batch
        tasks[1].cancel()  # its client left
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, cancelled, last = asyncio.run(requests())
    assert isinstance(cancelled, asyncio.CancelledError)
    assert isinstance(first, Ranking) and isinstance(last, Ranking)
    assert rec.calls == [3]


def test_a_busy_service_lets_the_next_requests_join_the_batch() -> None:
    rec, metrics = _model(), ServiceMetrics()
    batcher = RankingBatcher(metrics)
    keys = _keys(rec, 6)

    async def staggered() -> None:
        # A request, then another one turn of the loop later (as a read of the sockets
        # between them would hand it over).
        first = asyncio.create_task(batcher.ranking(rec, keys[0]))
        await asyncio.sleep(0)
        second = asyncio.create_task(batcher.ranking(rec, keys[1]))
        await asyncio.gather(first, second)

    asyncio.run(staggered())
    assert rec.calls == [1, 1]  # idle: the first is ranked at once, alone
    asyncio.run(requests_at_once(batcher, rec, keys[2:4]))
    assert rec.calls[-1] == 2  # two at once: the service is busy
    asyncio.run(staggered())
    assert rec.calls[-1] == 2  # busy: the second joins the first's batch
    assert rec.calls == [1, 1, 2, 2]


async def requests_at_once(
    batcher: RankingBatcher, rec: Ranker, keys: Sequence[RankingKey]
) -> None:
    await asyncio.gather(*(batcher.ranking(rec, key) for key in keys))
