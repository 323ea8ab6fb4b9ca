"""events outbox, audit log (append-only, enforced by triggers), notification channels

Revision ID: 0004_events
Revises: 0003_team_name
Create Date: 2026-11-23 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import wrenn_platform.control_plane.db.types

revision = '0004_events'
down_revision = '0003_team_name'
branch_labels = None
depends_on = None

_UTC = wrenn_platform.control_plane.db.types.UTCDateTime(timezone=True)
_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', _BIGINT_PK, autoincrement=True, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('team_id', sa.String(length=32), nullable=True),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.Column('published_at', _UTC, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('seq', name=op.f('uq_events_seq')),
    )
    op.create_index('ix_events_team_seq', 'events', ['team_id', 'seq'], unique=False)

    op.create_table('audit_logs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=True),
    sa.Column('actor_type', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=False),
    sa.Column('actor_name', sa.String(length=320), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_logs')),
    )
    op.create_index('ix_audit_logs_team_time', 'audit_logs', ['team_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_audit_logs_time', 'audit_logs', ['created_at', 'id'], unique=False)

    op.create_table('channels',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('config_encrypted', sa.String(length=8192), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.Column('updated_at', _UTC, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channels')),
    sa.UniqueConstraint('team_id', 'name', name='uq_channels_team_name'),
    )
    op.create_index(op.f('ix_channels_team_id'), 'channels', ['team_id'], unique=False)

    op.create_table('channel_deliveries',
    sa.Column('id', _BIGINT_PK, autoincrement=True, nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', _UTC, nullable=False),
    sa.Column('lease_until', _UTC, nullable=True),
    sa.Column('lease_owner', sa.String(length=32), nullable=True),
    sa.Column('created_at', _UTC, nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_channel_deliveries_channel_id_channels'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_deliveries')),
    )
    op.create_index('ix_channel_deliveries_due', 'channel_deliveries', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_channel_deliveries_channel', 'channel_deliveries', ['channel_id', 'id'], unique=False)

    op.create_table('channel_delivery_attempts',
    sa.Column('id', _BIGINT_PK, autoincrement=True, nullable=False),
    sa.Column('delivery_id', _BIGINT_PK, nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=1024), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['channel_deliveries.id'],
                            name=op.f('fk_channel_delivery_attempts_delivery_id_channel_deliveries'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_delivery_attempts')),
    )
    op.create_index(op.f('ix_channel_delivery_attempts_delivery_id'), 'channel_delivery_attempts', ['delivery_id'],
                    unique=False)

    # The audit log is append-only, whatever client writes to the database.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("""
            CREATE FUNCTION wrenn_audit_logs_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'audit_logs is append-only'; END;
            $$ LANGUAGE plpgsql""")
        op.execute("""
            CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
            FOR EACH ROW EXECUTE FUNCTION wrenn_audit_logs_append_only()""")
    else:
        for verb in ('UPDATE', 'DELETE'):
            op.execute(f"""
                CREATE TRIGGER audit_logs_no_{verb.lower()} BEFORE {verb} ON audit_logs
                BEGIN SELECT RAISE(ABORT, 'audit_logs is append-only'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs")
        op.execute("DROP FUNCTION IF EXISTS wrenn_audit_logs_append_only()")
    op.drop_table('channel_delivery_attempts')
    op.drop_table('channel_deliveries')
    op.drop_table('channels')
    op.drop_table('audit_logs')
    op.drop_table('events')
