"""hosts.agent_key: the key that signs the control plane's requests to a remote host agent (sealed)

Revision ID: 0008_host_agent_key
Revises: 0007_builds_lease
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_host_agent_key'
down_revision = '0007_builds_lease'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agent_key', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('agent_key')
