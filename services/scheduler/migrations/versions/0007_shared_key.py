"""The scheduler's key, shared by its replicas when none is configured.

Revision ID: scheduler_0007
Revises: scheduler_0006
"""
from alembic import op
import sqlalchemy as sa

revision = "scheduler_0007"
down_revision = "scheduler_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_keys",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scheduler_keys"),
    )


def downgrade() -> None:
    op.drop_table("scheduler_keys")
