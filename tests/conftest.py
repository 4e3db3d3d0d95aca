"""Shared fixtures: real SQLite files and real PostgreSQL databases, migrated by Alembic."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, text

from recsys.data.interactions import Interactions
from recsys.store import migrate
from recsys.store.db import make_engine
from recsys.train_config import TrainConfig

PG_ADMIN_URL = os.environ.get(
    "RECSYS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(exc).__name__}: {exc})"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    reason = _postgres_available()
    if reason is not None:
        if os.environ.get("RECSYS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"RECSYS_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    return PG_ADMIN_URL


def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    name = f"recsys_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    yield from fresh_pg_database(postgres_admin_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'recsys.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'recsys.db'}"
    else:
        admin = request.getfixturevalue("postgres_admin_url")
        yield from fresh_pg_database(admin)


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A migrated database of each kind."""
    migrate.upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


# Few factors, little regularisation, a high learning rate: enough to learn a 2-group pattern.
CHECKERBOARD_CONFIG = TrainConfig(
    n_factors=4, epochs=40, batch_size=64, lr=0.05, factor_l2=0.001, patience=40, init_std=0.1
)


def checkerboard(
    n_users: int = 40, n_items: int = 40, holdout: float = 0.1, seed: int = 0
) -> tuple[Interactions, np.ndarray]:
    """Two taste groups: users love (5) the items of their group and dislike (1) the others.

    Returns all cells as Interactions and a boolean mask of the withheld cells; a working
    factor model recovers the withheld cells from the pattern alone.
    """
    rng = np.random.default_rng(seed)
    grid_u, grid_i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    u, i = grid_u.ravel(), grid_i.ravel()
    ratings = np.where((u % 2) == (i % 2), 5.0, 1.0)
    withheld = rng.random(len(u)) < holdout
    return Interactions.from_arrays(u, i, ratings), withheld
