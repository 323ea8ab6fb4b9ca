"""hosts and builds: host_tags, template_builds

Revision ID: 0006_host_tags_builds
Revises: 0005_identity
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wrenn_platform.control_plane.db.types

revision = '0006_host_tags_builds'
down_revision = '0005_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('host_tags',
    sa.Column('host_id', sa.String(length=32), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('created_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_host_tags_host_id_hosts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('host_id', 'tag', name=op.f('pk_host_tags'))
    )
    op.create_table('template_builds',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('base_template', sa.String(length=128), nullable=False),
    sa.Column('recipe', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('capsule_id', sa.String(length=32), nullable=True),
    sa.Column('logs', sa.Text(), nullable=False),
    sa.Column('error', sa.String(length=1024), nullable=False),
    sa.Column('created_by', sa.String(length=32), nullable=False),
    sa.Column('created_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_template_builds'))
    )
    with op.batch_alter_table('template_builds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_template_builds_team_id'), ['team_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('template_builds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_template_builds_team_id'))
    op.drop_table('template_builds')
    op.drop_table('host_tags')
