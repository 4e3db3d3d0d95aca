"""`alembic upgrade head` on an empty database gives exactly the models' schema."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from recsys.store import migrate
from recsys.store.db import make_engine
from recsys.store.tables import metadata


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        return list(compare_metadata(ctx, metadata))


def test_upgrade_head_matches_models(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    diff = schema_differences(engine)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == [], f"migrations and models differ: {diff}"
    assert {"users", "items", "ratings", "training_runs", "model_versions"} <= tables


def test_downgrade_to_base_removes_everything(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    migrate.downgrade(empty_db_url, "base")
    engine = make_engine(empty_db_url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert tables == set()
