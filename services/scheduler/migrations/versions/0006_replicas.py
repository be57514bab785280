"""Scheduler replicas on one database, and which of them owns each work pool.

Revision ID: scheduler_0006
Revises: scheduler_0005
"""
from alembic import op
import sqlalchemy as sa

revision = "scheduler_0006"
down_revision = "scheduler_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_replicas",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_replicas"),
    )
    op.create_table(
        "pool_owners",
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("replica", sa.String(length=64), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pool", name="pk_pool_owners"),
    )
    op.create_index("ix_pool_owners_replica", "pool_owners", ["replica"])


def downgrade() -> None:
    op.drop_index("ix_pool_owners_replica", table_name="pool_owners")
    op.drop_table("pool_owners")
    op.drop_table("scheduler_replicas")
