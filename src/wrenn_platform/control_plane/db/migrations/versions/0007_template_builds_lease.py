"""builds: template_builds.lease_until (a running build whose worker died is failed, not stuck)

Revision ID: 0007_builds_lease
Revises: 0006_host_tags_builds
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wrenn_platform.control_plane.db.types

revision = '0007_builds_lease'
down_revision = '0006_host_tags_builds'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('template_builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('template_builds', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
