"""snapshots: state a process saves for the next one (the monitoring tally of the last day)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'snapshots',
        sa.Column(
            'name', sa.String(length=100), nullable=False,
            comment='what the body holds, and for which settings',
        ),
        sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_snapshots')),
        comment='state a process saves so that the next one does not rebuild it from every row',
    )


def downgrade() -> None:
    op.drop_table('snapshots')
