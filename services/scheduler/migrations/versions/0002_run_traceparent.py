"""Flow runs keep the trace context of the request that created them.

Revision ID: scheduler_0002
Revises: scheduler_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "scheduler_0002"
down_revision = "scheduler_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=55), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_column("traceparent")
