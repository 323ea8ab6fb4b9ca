"""team names up to 128 characters (the contract's limit)

Revision ID: 0003_team_name
Revises: 0002_capsules
Create Date: 2026-11-23 13:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_team_name'
down_revision = '0002_capsules'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(length=100), type_=sa.String(length=128),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(length=128), type_=sa.String(length=100),
                              existing_nullable=False)
