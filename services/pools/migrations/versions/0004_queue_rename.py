"""Queues may be renamed: the default queue is marked rather than known by its name, and a
rename its deployments and runs have not yet followed is remembered.

Revision ID: pools_0004
Revises: pools_0003
"""
from alembic import op
import sqlalchemy as sa

revision = "pools_0004"
down_revision = "pools_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_queues") as batch:
        batch.add_column(sa.Column("is_default", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("renamed_from", sa.String(255), nullable=True))
    op.execute("UPDATE work_queues SET is_default = (name = 'default')")


def downgrade() -> None:
    with op.batch_alter_table("work_queues") as batch:
        batch.drop_column("renamed_from")
        batch.drop_column("is_default")
