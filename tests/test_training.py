"""Training end to end: early stopping keeps the best epoch, NaN is caught, runs are recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import Engine

from recsys import registry
from recsys.config import RatingScale
from recsys.data.ingest import ingest_csv
from recsys.data.interactions import Interactions
from recsys.data.samples import generate_synthetic
from recsys.data.split import _held_by_hash, holdout, pair_hash
from recsys.errors import ConfigError, EmptyDataError, TrainingDivergedError
from recsys.model import artifact
from recsys.train_config import TrainConfig
from recsys.training.rating_objective import mean_squared_error, tensors_of
from recsys.training.runs import train_from_database
from recsys.training.trainer import Trainer


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    generate_synthetic(path, n_users=300, n_items=200, n_ratings=12_000, seed=5)
    return path


def _frame_data(path: Path) -> Interactions:
    import pandas as pd

    return Interactions.from_frame(pd.read_csv(path))


def test_synthetic_generator_is_realistic(synthetic: Path) -> None:
    data = _frame_data(synthetic)
    assert len(data) == 12_000
    keys = data.users.astype(np.int64) * data.n_items + data.items
    assert len(np.unique(keys)) == len(keys)  # one rating per (user, item)
    counts = np.sort(data.item_counts())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()  # a popular head
    assert set(np.unique(data.ratings)) <= set(np.arange(0.5, 5.01, 0.5))


def test_synthetic_generator_keeps_pairs_unique_across_chunks(tmp_path: Path) -> None:
    """Drawn a chunk at a time, each chunk's pairs checked against every earlier chunk's: a
    dense corner (900 of 2,000 cells) makes later chunks draw mostly pairs already written."""
    path = tmp_path / "chunks.csv"
    assert generate_synthetic(path, n_users=50, n_items=40, n_ratings=900, seed=1, chunk_rows=60)
    data = _frame_data(path)
    assert len(data) == 900
    keys = data.users.astype(np.int64) * data.n_items + data.items
    assert len(np.unique(keys)) == len(keys)


def test_early_stopping_returns_the_best_epoch(synthetic: Path) -> None:
    data = _frame_data(synthetic)
    train, valid = holdout(data, 0.2, seed=0)
    # No regularisation and many factors: it overfits, so validation loss turns up.
    cfg = TrainConfig(
        n_factors=128, factor_l2=0.0, lr=0.05, epochs=40, batch_size=256, patience=2, refit=False
    )
    res = Trainer(cfg, RatingScale()).fit(train, valid)
    assert res.refit is None
    val = [h.val_loss for h in res.history]
    assert res.stopped_early and len(res.history) < 40
    assert res.best_epoch == int(np.argmin(val)) + 1
    assert mean_squared_error(res.network, tensors_of(valid, torch.device("cpu"))) == pytest.approx(
        val[res.best_epoch - 1], rel=1e-5
    )
    assert all(h.train_loss > 0 for h in res.history)


def test_refit_learns_the_validation_ratings_for_the_best_number_of_epochs(
    synthetic: Path,
) -> None:
    data = _frame_data(synthetic)
    train, valid = holdout(data, 0.2, seed=0)
    cfg = TrainConfig(epochs=4, batch_size=256, lr=0.02)
    selected = Trainer(cfg.model_copy(update={"refit": False}), RatingScale()).fit(train, valid)
    refit = Trainer(cfg, RatingScale()).fit(train, valid)
    # The learning curve and the epoch choice are the selection pass's, unchanged.
    assert [h.val_loss for h in refit.history] == [h.val_loss for h in selected.history]
    assert refit.refit is not None and refit.best_epoch == selected.best_epoch
    assert refit.refit.epochs == selected.best_epoch and refit.refit.ratings == len(data)
    # The refit network has seen the validation ratings: it fits them better.
    on_valid = tensors_of(valid, torch.device("cpu"))
    assert mean_squared_error(refit.network, on_valid) < 0.9 * mean_squared_error(
        selected.network, on_valid
    )


def test_concat_needs_the_same_vocabularies(synthetic: Path) -> None:
    data = _frame_data(synthetic)
    first, second = holdout(data, 0.5, seed=1)
    both = first.concat(second)
    assert len(both) == len(data) and both.user_vocab is data.user_vocab
    other = _frame_data(synthetic)
    with pytest.raises(ValueError, match="same vocabularies"):
        first.concat(other)


def test_nan_loss_raises_a_clear_error(synthetic: Path) -> None:
    data = _frame_data(synthetic)
    trainer = Trainer(TrainConfig(epochs=2), RatingScale())
    net = trainer.build(data, torch.Generator().manual_seed(0), float(data.ratings.mean()))
    with torch.no_grad():
        net.user_factors.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        trainer.fit(data, data, network=net)


def test_empty_data_and_time_split() -> None:
    empty = Interactions.from_arrays(np.array([]), np.array([]), np.array([]))
    with pytest.raises(EmptyDataError, match="recsys ingest"):
        Trainer(TrainConfig(), RatingScale()).fit(empty, empty)
    data = Interactions.from_arrays(
        np.array([1, 2, 3, 4]),
        np.array([1, 1, 2, 2]),
        np.array([1.0, 2, 3, 4]),
        np.array([40, 10, 30, 20]),
    )
    _kept, held = holdout(data, 0.5, method="time")
    assert sorted(held.timestamps.tolist()) == [30, 40]  # type: ignore[union-attr]
    no_ts = Interactions.from_arrays(np.array([1]), np.array([1]), np.array([1.0]))
    with pytest.raises(ConfigError, match="timestamps"):
        holdout(no_ts, 0.5, method="time")


def test_train_from_database_records_everything(
    engine: Engine, synthetic: Path, tmp_path: Path
) -> None:
    ingest_csv(engine, synthetic)
    cfg = TrainConfig(epochs=6, n_factors=16)
    reg = train_from_database(engine, tmp_path / "art", cfg, RatingScale())
    run = registry.get_run(engine, reg.run_id)
    assert run is not None and run["status"] == "succeeded"
    assert len(run["history"]) == len(reg.fitted.result.history) >= 1
    assert {"train_loss", "val_loss", "epoch"} <= set(run["history"][0])
    assert run["metrics"]["model"]["rmse"] < run["metrics"]["global_mean"]["rmse"]
    assert run["data_counts"]["ratings"] == 12_000
    row = registry.get_version(engine, reg.version)
    assert row["status"] == (registry.PRODUCTION if reg.promoted else registry.REJECTED)
    rec = artifact.load(Path(row["artifact_path"]), row["checksum"])
    assert rec.card.data is not None and reg.fitted.recommender.card.data is not None
    assert rec.card.data.fingerprint == reg.fitted.recommender.card.data.fingerprint
    # The card reads back as it was written, its settings typed again.
    assert rec.card.config == reg.fitted.recommender.card.config
    assert rec.card.version == reg.version


def test_hash_split_holds_out_the_same_pairs_in_any_snapshot() -> None:
    rng = np.random.default_rng(3)
    users = rng.integers(0, 300, 20_000).astype(str)
    items = rng.integers(0, 200, 20_000).astype(str)
    data = Interactions.from_arrays(users, items, rng.integers(1, 6, 20_000))
    kept, held = holdout(data, 0.1, method="hash", seed=0)
    assert 0.08 < len(held) / len(data) < 0.12
    # Computed a chunk at a time (to bound memory), the mask is the hash itself.
    expected = pair_hash(data, 0) < 0.1
    assert np.array_equal(_held_by_hash(data, 0, 0.1, step=999), expected)
    assert len(held) == int(expected.sum())

    def pairs(d: Interactions) -> set[tuple[str, str]]:
        return {
            (d.user_vocab.ids[u], d.item_vocab.ids[i])
            for u, i in zip(d.users, d.items, strict=True)
        }

    # Another snapshot (a part of the data, other vocabularies) holds out the same pairs.
    part = Interactions.from_arrays(users[::3], items[::3], np.ones(len(users[::3])))
    _, part_held = holdout(part, 0.1, method="hash", seed=0)
    assert pairs(part_held) == pairs(held) & pairs(part)
    assert pairs(kept).isdisjoint(pairs(held))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_auto_device_trains_on_the_gpu_to_the_cpu_quality(synthetic: Path) -> None:
    """Where a GPU is present, the default config trains on it without any change, and the
    model matches one trained on the CPU."""
    data = _frame_data(synthetic)
    train, valid = holdout(data, 0.2, seed=0)
    cfg = TrainConfig(epochs=4, batch_size=256)
    on_gpu = Trainer(cfg, RatingScale()).fit(train, valid)
    on_cpu = Trainer(cfg.model_copy(update={"device": "cpu"}), RatingScale()).fit(train, valid)
    assert on_gpu.device.startswith("cuda")
    assert next(on_gpu.network.parameters()).is_cuda
    gpu_val, cpu_val = on_gpu.history[-1].val_loss, on_cpu.history[-1].val_loss
    assert gpu_val == pytest.approx(cpu_val, rel=0.05)
