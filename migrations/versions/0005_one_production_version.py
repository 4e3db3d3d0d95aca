"""at most one production and one canary version

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 08:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_OF = ("production", "canary")


def upgrade() -> None:
    # Registries written before the lock may hold two production (or canary) rows: keep the
    # most recently promoted (or newest) one, retire the others, then forbid it for good.
    bind = op.get_bind()
    for status in ONE_OF:
        rows = bind.execute(
            sa.text(
                "select id from model_versions where status = :s "
                "order by promoted_at desc nulls last, id desc"
            ),
            {"s": status},
        ).scalars().all()
        for stale in rows[1:]:
            bind.execute(
                sa.text("update model_versions set status = 'retired' where id = :id"),
                {"id": stale},
            )
        where = sa.text(f"status = '{status}'")
        op.create_index(
            f"uq_model_versions_one_{status}",
            "model_versions",
            ["status"],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    for status in ONE_OF:
        op.drop_index(f"uq_model_versions_one_{status}", table_name="model_versions")
