"""model actions: the registry's audit trail

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 10:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('model_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False,
              comment='"operator token", "key NAME", or the command or job that acted'),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('from_version', sa.String(length=64), nullable=True,
              comment='production before the action'),
    sa.Column('to_version', sa.String(length=64), nullable=True,
              comment='the version acted on'),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_actions'))
    )
    op.create_index('ix_model_actions_at', 'model_actions', ['at'])


def downgrade() -> None:
    op.drop_index('ix_model_actions_at', table_name='model_actions')
    op.drop_table('model_actions')
