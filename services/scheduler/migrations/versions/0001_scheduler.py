"""Deployments, schedules, flow runs, their states and logs.

Revision ID: scheduler_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "scheduler_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deployments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('entrypoint', sa.Text(), nullable=False),
    sa.Column('pool', sa.String(length=255), nullable=False),
    sa.Column('queue', sa.String(length=255), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('job_variables', sa.JSON(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments')),
    sa.UniqueConstraint('name', name=op.f('uq_deployments_name'))
    )
    op.create_index(op.f('ix_deployments_pool'), 'deployments', ['pool'], unique=False)
    op.create_table('flow_runs',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=True),
    sa.Column('deployment', sa.String(length=255), nullable=False),
    sa.Column('pool', sa.String(length=255), nullable=False),
    sa.Column('queue', sa.String(length=255), nullable=False),
    sa.Column('entrypoint', sa.Text(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('job_variables', sa.JSON(), nullable=False),
    sa.Column('job_configuration', sa.JSON(), nullable=False),
    sa.Column('scheduled_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=False),
    sa.Column('lease', sa.Integer(), nullable=False),
    sa.Column('lease_expires', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('slot', sa.String(length=128), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_flow_runs')),
    sa.UniqueConstraint('id', name=op.f('uq_flow_runs_id')),
    sa.UniqueConstraint('slot', name=op.f('uq_flow_runs_slot'))
    )
    op.create_index(op.f('ix_flow_runs_deployment_id'), 'flow_runs', ['deployment_id'], unique=False)
    op.create_index('ix_flow_runs_pool_state', 'flow_runs', ['pool', 'state'], unique=False)
    op.create_index('ix_flow_runs_worker_state', 'flow_runs', ['worker', 'state'], unique=False)
    op.create_table('flow_run_logs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_seq', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stream', sa.String(length=8), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_seq'], ['flow_runs.seq'], name=op.f('fk_flow_run_logs_run_seq_flow_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flow_run_logs'))
    )
    op.create_index(op.f('ix_flow_run_logs_run_seq'), 'flow_run_logs', ['run_seq'], unique=False)
    op.create_table('flow_run_states',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_seq', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_seq'], ['flow_runs.seq'], name=op.f('fk_flow_run_states_run_seq_flow_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flow_run_states'))
    )
    op.create_index(op.f('ix_flow_run_states_run_seq'), 'flow_run_states', ['run_seq'], unique=False)
    op.create_table('schedules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('cron', sa.String(length=255), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('interval_seconds', sa.Float(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('anchor', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_schedules_deployment_id_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules'))
    )
    op.create_index(op.f('ix_schedules_deployment_id'), 'schedules', ['deployment_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_schedules_deployment_id'), table_name='schedules')
    op.drop_table('schedules')
    op.drop_index(op.f('ix_flow_run_states_run_seq'), table_name='flow_run_states')
    op.drop_table('flow_run_states')
    op.drop_index(op.f('ix_flow_run_logs_run_seq'), table_name='flow_run_logs')
    op.drop_table('flow_run_logs')
    op.drop_index('ix_flow_runs_worker_state', table_name='flow_runs')
    op.drop_index('ix_flow_runs_pool_state', table_name='flow_runs')
    op.drop_index(op.f('ix_flow_runs_deployment_id'), table_name='flow_runs')
    op.drop_table('flow_runs')
    op.drop_index(op.f('ix_deployments_pool'), table_name='deployments')
    op.drop_table('deployments')
