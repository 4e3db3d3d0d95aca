"""Early stopping: which epoch is kept, and when training ends."""

from __future__ import annotations

import torch
from torch import nn

from recsys.training.stopping import EarlyStopping

# A validation figure (lower is better) that rises slowly to epoch 12, with one lucky epoch
# (3) on the way: the shape of a small split's NDCG curve.
CURVE = [-0.100, -0.110, -0.150, -0.120, -0.125, -0.130, -0.135, -0.140, -0.142, -0.144]
CURVE += [-0.146, -0.148, -0.140, -0.138, -0.136, -0.134, -0.132, -0.130]


def _run(window: int, patience: int = 3) -> tuple[int, int, bool]:
    """(kept epoch, last epoch trained, stopped early); the network's weight records the
    epoch it was trained to, so what `restore` loads back says which epoch was kept."""
    net = nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(net, patience=patience, min_delta=0.0, window=window)
    last = 0
    for epoch, value in enumerate(CURVE, 1):
        last = epoch
        with torch.no_grad():
            net.weight.fill_(epoch)
        if stopping.update(epoch, value):
            break
    stopping.restore()
    assert int(net.weight.item()) == stopping.best_epoch
    return stopping.best_epoch, last, stopping.stopped_early


def test_one_lucky_epoch_ends_training_without_a_window() -> None:
    assert _run(window=1) == (3, 7, True)


def test_a_window_looks_past_one_lucky_epoch() -> None:
    kept, last, stopped = _run(window=3)
    # Means of three epochs: the lucky epoch's (-0.1317 at epoch 5) is soon beaten; the best is
    # epochs 10-12 (-0.1460), and training stops after three worse means.
    assert (kept, last, stopped) == (12, 16, True)


def test_without_validation_every_epoch_is_kept() -> None:
    net = nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(net, patience=0, min_delta=0.0, window=5)
    assert not any(stopping.update(e, 1.0, watched=False) for e in range(1, 6))
    assert stopping.best_epoch == 5
