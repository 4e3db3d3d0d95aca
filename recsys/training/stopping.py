"""Early stopping shared by the rating and the ranking heads: keep the weights of the best
epoch, stop after `patience` epochs without an improvement of at least `min_delta`.

With a `window` above 1 an epoch is judged by the mean of its figure and the previous
`window - 1` epochs' (fewer at the start), and the weights kept are those of the last epoch of
the best window: a noisy validation curve's single high epoch on a plateau no longer ends
training before the curve has stopped rising."""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any

from torch import nn


class EarlyStopping:
    def __init__(self, net: nn.Module, *, patience: int, min_delta: float, window: int = 1) -> None:
        self.net = net
        self.patience = patience
        self.min_delta = min_delta
        self._recent: deque[float] = deque(maxlen=max(1, window))
        self.best_value = math.inf
        self.best_epoch = 0
        self.stopped_early = False
        self._best_state: dict[str, Any] = copy.deepcopy(net.state_dict())

    def update(self, epoch: int, value: float, *, watched: bool = True) -> bool:
        """Record the epoch's figure (lower is better); True when training should stop.
        Without anything `watched` (no validation data) every epoch counts as the best."""
        self._recent.append(value)
        value = sum(self._recent) / len(self._recent)
        if not watched or value < self.best_value - self.min_delta:
            self.best_value, self.best_epoch = value, epoch
            self._best_state = copy.deepcopy(self.net.state_dict())
        elif epoch - self.best_epoch > self.patience:
            self.stopped_early = True
        return self.stopped_early

    def restore(self) -> None:
        """Load the best epoch's weights back into the network."""
        self.net.load_state_dict(self._best_state)
        self.net.eval()
