"""Schedules may be an RRULE (RFC 5545), as Prefect's RRuleSchedule.

Revision ID: scheduler_0004
Revises: scheduler_0003
"""
from alembic import op
import sqlalchemy as sa

revision = "scheduler_0004"
down_revision = "scheduler_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("rrule", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("rrule")
