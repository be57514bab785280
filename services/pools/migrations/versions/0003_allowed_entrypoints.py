"""Pools say which entrypoints their deployments may use.

Revision ID: pools_0003
Revises: pools_0002
"""
from alembic import op
import sqlalchemy as sa

revision = "pools_0003"
down_revision = "pools_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_pools") as batch:
        batch.add_column(sa.Column("allowed_entrypoints", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("work_pools") as batch:
        batch.drop_column("allowed_entrypoints")
