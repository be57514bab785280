"""API keys.

Revision ID: keys_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "keys_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("pool", sa.String(255), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
    )
    # One key not revoked per name, also under concurrent creates.
    active = sa.text("revoked IS NULL")
    op.create_index("uq_api_keys_name_active", "api_keys", ["name"], unique=True, sqlite_where=active, postgresql_where=active)


def downgrade() -> None:
    op.drop_table("api_keys")
