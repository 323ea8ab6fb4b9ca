"""identity: users.activated_at (tells a deactivated account from one never activated)

Revision ID: 0005_identity
Revises: 0004_events
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wrenn_platform.control_plane.db.types


revision = '0005_identity'
down_revision = '0004_events'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('activated_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=True))
    # Accounts active today were activated; when is unknown, so their creation time stands in.
    op.execute("UPDATE users SET activated_at = created_at WHERE is_active")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('activated_at')
