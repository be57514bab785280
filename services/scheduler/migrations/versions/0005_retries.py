"""Retries, as Prefect's flow retries: deployments and runs say how many and how far
apart; a run counts its attempts and may carry a state name (AwaitingRetry).

Revision ID: scheduler_0005
Revises: scheduler_0004
"""
from alembic import op
import sqlalchemy as sa

revision = "scheduler_0005"
down_revision = "scheduler_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("retry_delay_seconds", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("retry_delay_seconds", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("run_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("state_name", sa.String(length=32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        for column in ("state_name", "run_count", "retry_delay_seconds", "retries"):
            batch.drop_column(column)
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("retry_delay_seconds")
        batch.drop_column("retries")
