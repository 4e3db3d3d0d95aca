"""The ranking head's spectral start: its item tables at the histories' leading singular
directions, which rank before the first step (`recsys.training.spectral`)."""

from __future__ import annotations

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.train_config import TrainConfig
from recsys.training.choice import _Steps
from recsys.training.choice_parts import Histories
from recsys.training.spectral import SCALE, spectral_items


def _histories(n_users: int, n_items: int, seed: int) -> tuple[Histories, np.ndarray, np.ndarray]:
    """Users who each choose from two of four overlapping tastes: a history matrix with a few
    strong directions and noise. Returns the histories, the 0/1 matrix of choices and the 0/1
    matrix of each user's tastes, both in the data's rows and columns."""
    rng = np.random.default_rng(seed)
    tastes = rng.random((4, n_items)) < 0.3
    chosen = np.zeros((n_users, n_items), dtype=bool)
    theirs = np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        theirs[u] = tastes[rng.choice(4, 2, replace=False)].any(axis=0)
        chosen[u] = theirs[u] & (rng.random(n_items) < 0.5)
    users, items = np.nonzero(chosen)
    data = Interactions.from_arrays(users, items, np.full(len(users), 4.0))
    # from_arrays numbers ids in order of appearance: both matrices in the data's own order.
    user_ids = np.array([int(i) for i in data.user_vocab.ids])
    item_ids = np.array([int(i) for i in data.item_vocab.ids])
    return (
        Histories.of(data, TrainConfig()),
        chosen[np.ix_(user_ids, item_ids)].astype(float),
        theirs[np.ix_(user_ids, item_ids)],
    )


def test_the_start_spans_the_leading_singular_directions() -> None:
    hist, dense, _ = _histories(200, 60, seed=0)
    items = spectral_items(hist, dense.shape[1], 8, seed=3)
    assert items.shape == (dense.shape[1], 8)
    assert abs(float(items.std()) - SCALE) < 1e-4
    _, _, vt = np.linalg.svd(dense, full_matrices=False)
    found = items[:, :3].double().numpy()
    found = found / np.linalg.norm(found, axis=0)
    # The cosines of the principal angles between the top three directions: near 1 (three
    # rounds of subspace iteration, as the head gets: the third settles to within 2 %).
    cosines = np.linalg.svd(vt[:3] @ found, compute_uv=False)
    assert cosines.min() > 0.98 and cosines.max() > 0.9999, cosines
    # Stronger directions first, and weighted by their strength.
    norms = items.norm(dim=0)
    assert bool((norms[:-1] >= norms[1:] - 1e-6).all()), norms


def test_a_spectral_start_ranks_before_any_step() -> None:
    """With both tables at the start and no user offsets, a user's scores are their history
    times V V': their own tastes' items lead, where a random start ranks at chance."""
    hist, dense, tastes = _histories(200, 60, seed=1)
    n_users, n_items = dense.shape

    def hit_rate(items: torch.Tensor) -> float:
        x = torch.zeros(n_users, n_items)
        rows = np.repeat(np.arange(n_users), np.diff(hist.indptr))
        x[rows, hist.items] = torch.from_numpy(hist.inputs)
        scores = (x @ items) @ items.T
        scores[x > 0] = -torch.inf  # what they chose already
        top = scores.topk(5, dim=1).indices.numpy()
        # Relevant: the items of the user's tastes they did not choose.
        return float(np.mean(np.take_along_axis(tastes & (dense == 0), top, axis=1)))

    spectral = hit_rate(spectral_items(hist, n_items, 8, seed=0))
    random = hit_rate(torch.randn(n_items, 8, generator=torch.Generator().manual_seed(0)))
    assert spectral > random + 0.15, (spectral, random)


def test_a_head_asked_for_it_starts_from_the_spectral_tables() -> None:
    """`rank_init="spectral"`: a fresh head's item tables are the spectral start (on its own
    small random start, so that an ensemble's heads differ); by default they are random."""
    _, dense, _ = _histories(120, 40, seed=2)
    users, items = np.nonzero(dense)
    data = Interactions.from_arrays(users, items, np.full(len(users), 4.0))

    def agreement(config: TrainConfig) -> float:
        steps = _Steps.start(config, data, torch.device("cpu"), None, member=0)
        expected = spectral_items(
            Histories.of(data, config), data.n_items, config.rank_factors, seed=config.seed
        )
        tables = [steps.net.item_in.detach(), steps.net.item_out.detach()]
        return min(
            float(torch.nn.functional.cosine_similarity(t.flatten(), expected.flatten(), dim=0))
            for t in tables
        )

    assert agreement(TrainConfig(rank_factors=8, rank_init="spectral")) > 0.95
    assert abs(agreement(TrainConfig(rank_factors=8))) < 0.2
