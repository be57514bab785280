"""Flow runs keep the idempotency key of the call that made them, unique.

Revision ID: scheduler_0003
Revises: scheduler_0002
"""
from alembic import op
import sqlalchemy as sa

revision = "scheduler_0003"
down_revision = "scheduler_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
        batch.create_unique_constraint("uq_flow_runs_idempotency_key", ["idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_constraint("uq_flow_runs_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
