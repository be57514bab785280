"""Pools say how many queues worker keys may add, and count their queues.

Revision ID: pools_0002
Revises: pools_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "pools_0002"
down_revision = "pools_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_pools") as batch:
        batch.add_column(sa.Column("worker_queue_limit", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("queue_count", sa.Integer(), nullable=False, server_default="1"))
    op.execute(
        "UPDATE work_pools SET queue_count = (SELECT count(*) FROM work_queues WHERE work_queues.pool_id = work_pools.id)"
    )
    op.create_index("ix_work_queues_pool_id_priority", "work_queues", ["pool_id", "priority"])


def downgrade() -> None:
    op.drop_index("ix_work_queues_pool_id_priority", "work_queues")
    with op.batch_alter_table("work_pools") as batch:
        batch.drop_column("queue_count")
        batch.drop_column("worker_queue_limit")
