"""impressions keep the predicted ratings they were shown with; a user's feedback and
impressions are found by index (the dashboard's user page)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 10:40:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: lists logged before this have only their ranking scores, which are no
    # ratings; monitoring leaves them out of the prediction bias.
    with op.batch_alter_table('impressions') as batch:
        batch.add_column(sa.Column(
            'predicted', sa.JSON(), nullable=True,
            comment='predicted rating of each item, in list order (scores are ranking scores)',
        ))
    op.create_index('ix_impressions_user_external_id', 'impressions', ['user_external_id'])
    op.create_index('ix_feedback_user_id', 'feedback', ['user_id'])


def downgrade() -> None:
    op.drop_index('ix_feedback_user_id', table_name='feedback')
    op.drop_index('ix_impressions_user_external_id', table_name='impressions')
    with op.batch_alter_table('impressions') as batch:
        batch.drop_column('predicted')
