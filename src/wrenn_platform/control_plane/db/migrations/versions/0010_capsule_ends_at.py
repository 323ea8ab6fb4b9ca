"""capsule_ends_at: an absolute end of life for capsules (E2B's sandbox timeout)

Revision ID: 0010_capsule_ends_at
Revises: 0009_team_placement_tags
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wrenn_platform.control_plane.db.types

revision = '0010_capsule_ends_at'
down_revision = '0009_team_placement_tags'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('capsules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ends_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('on_end', sa.String(length=8), nullable=False, server_default='kill'))
        batch_op.create_index('ix_capsules_ends_at', ['ends_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('capsules', schema=None) as batch_op:
        batch_op.drop_index('ix_capsules_ends_at')
        batch_op.drop_column('on_end')
        batch_op.drop_column('ends_at')
