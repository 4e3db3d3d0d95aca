"""impressions log, per slot, whether exploration drew it and its propensity, and per list the
policy that drew it (off-policy evaluation)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 15:40:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: lists logged before this carry no propensities, and off-policy evaluation
    # leaves them out.
    with op.batch_alter_table('impressions') as batch:
        batch.add_column(sa.Column(
            'explored', sa.JSON(), nullable=True,
            comment='per slot: drawn by the exploration policy',
        ))
        batch.add_column(sa.Column(
            'propensities', sa.JSON(), nullable=True,
            comment='per slot: probability that the serving policy shows that item there',
        ))
        batch.add_column(sa.Column(
            'policy', sa.JSON(), nullable=True, comment='what drew the list (recsys.exploration)',
        ))


def downgrade() -> None:
    with op.batch_alter_table('impressions') as batch:
        batch.drop_column('policy')
        batch.drop_column('propensities')
        batch.drop_column('explored')
