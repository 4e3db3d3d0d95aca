"""A served model over a real database: synthetic films in three genres, users who love one
genre and dislike the others, so the right answers are known."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from recsys.config import RatingScale, Settings
from recsys.data.ingest import ingest_frames
from recsys.store import migrate
from recsys.store.db import make_engine
from recsys.train_config import TrainConfig
from recsys.training.runs import Registered, train_from_database
from service.app import create_app
from tests.conftest import fresh_pg_database

GENRES = ("Horror", "Comedy", "Western")
N_USERS, N_ITEMS = 150, 60
GENRE_CONFIG = TrainConfig(
    n_factors=4, epochs=25, batch_size=128, lr=0.03, factor_l2=0.001, patience=25, init_std=0.1
)


def genre_of(item_id: str) -> str:
    return GENRES[int(item_id.removeprefix("film")) % len(GENRES)]


def genre_frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users rate about half the films: 4.5-5 in their genre, 1-2 elsewhere."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str, str]] = []
    for u in range(N_USERS):
        loved = u % len(GENRES)
        for i in np.flatnonzero(rng.random(N_ITEMS) < 0.5):
            value = rng.choice([4.5, 5.0]) if i % len(GENRES) == loved else rng.choice([1.0, 2.0])
            rows.append((f"user{u}", f"film{i}", str(value), str(1_700_000_000 + len(rows))))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame(
        {
            "item_id": [f"film{i}" for i in range(N_ITEMS)],
            "title": [f"Film number {i}" for i in range(N_ITEMS)],
            "genres": [GENRES[i % len(GENRES)] for i in range(N_ITEMS)],
        }
    )
    return ratings, items


def train(engine: Engine, artifact_dir: Path, seed: int = 42) -> Registered:
    config = GENRE_CONFIG.model_copy(update={"seed": seed})
    registered = train_from_database(engine, artifact_dir, config, RatingScale())
    assert registered.promoted, "the genre model must beat the baselines"
    return registered


@dataclass
class Served:
    url: str
    artifact_dir: Path
    engine: Engine
    registered: Registered

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": self.url,
            "artifact_dir": self.artifact_dir,
            "reload_interval_s": 0.2,
            "impression_flush_s": 0.05,
            "recommend_min_support": 1,
            "cold_start_min_support": 5,
            "fold_in_min_support": 1,
            # Open writes, as on a laptop; tests/service/test_auth.py covers the locked-down case.
            "dev_mode": True,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]


def _served(url: str, artifact_dir: Path) -> Served:
    migrate.upgrade(url)
    engine = make_engine(url)
    ratings, items = genre_frames()
    ingest_frames(engine, [ratings], source="genres", item_frames=[items])
    return Served(url, artifact_dir, engine, train(engine, artifact_dir))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A migrated database with the genre data and a production model (one per module)."""
    tmp = tmp_path_factory.mktemp("served")
    if request.param == "sqlite":
        s = _served(f"sqlite:///{tmp / 'recsys.db'}", tmp / "artifacts")
        yield s
        s.engine.dispose()
    else:
        admin = request.getfixturevalue("postgres_admin_url")
        for url in fresh_pg_database(admin):
            s = _served(url, tmp / "artifacts")
            yield s
            s.engine.dispose()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.settings())) as c:
        yield c
