"""team_placement_tags: host tags a team's new capsules require

Revision ID: 0009_team_placement_tags
Revises: 0008_host_agent_key
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wrenn_platform.control_plane.db.types

revision = '0009_team_placement_tags'
down_revision = '0008_host_agent_key'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('team_placement_tags',
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('created_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_placement_tags_team_id_teams'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'tag', name=op.f('pk_team_placement_tags'))
    )


def downgrade() -> None:
    op.drop_table('team_placement_tags')
