"""team_limits: an admin's per-team overrides of the platform's default limits

Revision ID: 0011_team_limits
Revises: 0010_capsule_ends_at
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wrenn_platform.control_plane.db.types

revision = '0011_team_limits'
down_revision = '0010_capsule_ends_at'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('team_limits',
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('max_capsules', sa.Integer(), nullable=True),
    sa.Column('max_vcpus', sa.Integer(), nullable=True),
    sa.Column('max_memory_mb', sa.Integer(), nullable=True),
    sa.Column('max_disk_mb', sa.Integer(), nullable=True),
    sa.Column('max_snapshots', sa.Integer(), nullable=True),
    sa.Column('api_key_requests_per_second', sa.Integer(), nullable=True),
    sa.Column('updated_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_limits_team_id_teams'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', name=op.f('pk_team_limits'))
    )


def downgrade() -> None:
    op.drop_table('team_limits')
