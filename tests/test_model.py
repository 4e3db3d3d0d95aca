"""The network, the vocabulary and the data container."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.data.vocab import UNKNOWN, Vocabulary
from recsys.errors import ConfigError
from recsys.model.network import DotProductBias
from recsys.train_config import TrainConfig
from recsys.training.pipeline import fit
from recsys.training.trainer import Trainer
from tests.conftest import CHECKERBOARD_CONFIG, checkerboard


def test_forward_shape_and_range() -> None:
    net = DotProductBias(5, 7, 3, (0.0, 5.5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.user_factors.mul_(1000)  # extreme logits must still land inside the range
        out = net(torch.tensor([0, 1, 4]), torch.tensor([6, 0, 3]))
    assert out.shape == (3,)
    assert bool(((out >= 0.0) & (out <= 5.5)).all())


def test_global_bias_starts_at_mean() -> None:
    net = DotProductBias(2, 2, 2, (0.0, 5.0), mean_rating=4.0)
    with torch.no_grad():
        net.user_factors.zero_()
        assert float(net(torch.tensor([0]), torch.tensor([0]))) == pytest.approx(4.0, abs=1e-5)


def test_output_range_covers_the_scale() -> None:
    lo, hi = RatingScale(min=0.5, max=5.0).output_range()
    assert lo < 0.5 and hi > 5.0


def test_training_refuses_a_liked_threshold_outside_the_scale() -> None:
    config = CHECKERBOARD_CONFIG.model_copy(update={"liked_threshold": 8.0})
    with pytest.raises(ConfigError, match=r"liked_threshold 8\.0 lies outside the rating scale"):
        fit(checkerboard()[0], config, RatingScale(min=1.0, max=5.0))
    with pytest.raises(ValidationError):
        TrainConfig(liked_threshold=float("nan"))


def test_vocabulary() -> None:
    v = Vocabulary(["b", "a", "c"])
    assert v.index("a") == 1
    assert v.index("zz") == UNKNOWN
    assert v.indices(["c", "nope", "b"]).tolist() == [2, UNKNOWN, 0]
    assert v.ids_of([2, 0]) == ["c", "b"]
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])


def test_interactions_check_themselves() -> None:
    data = Interactions.from_arrays(
        np.array([10, 20, 10]), np.array(["x", "y", "y"]), np.array([1.0, 2, 3])
    )
    assert data.n_users == 2 and data.n_items == 2 and len(data) == 3
    assert "3 ratings of 2 users on 2 items" in repr(data)
    with pytest.raises(ValueError, match="same length"):
        Interactions(
            np.array([0]), np.array([0, 1]), np.array([1.0]), Vocabulary("a"), Vocabulary("ab")
        )
    with pytest.raises(ValueError, match="out of range"):
        Interactions(
            np.array([3]), np.array([0]), np.array([1.0]), Vocabulary("a"), Vocabulary("a")
        )
    with pytest.raises(ValueError, match="finite"):
        Interactions(
            np.array([0]), np.array([0]), np.array([np.nan]), Vocabulary("a"), Vocabulary("a")
        )


def test_checkerboard_withheld_cells_are_recovered() -> None:
    data, withheld = checkerboard()
    train, test = data.subset(~withheld), data.subset(withheld)
    cfg = CHECKERBOARD_CONFIG.model_copy(update={"epochs": 60, "patience": 60, "seed": 1})
    result = Trainer(cfg, RatingScale(min=1.0, max=5.0)).fit(train, test)
    with torch.no_grad():
        pred = result.network(
            torch.from_numpy(test.users.astype(np.int64)),
            torch.from_numpy(test.items.astype(np.int64)),
        ).numpy()
    liked = test.ratings == 5.0
    assert (pred[liked] > 4.0).all() and (pred[~liked] < 2.0).all()
