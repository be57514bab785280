"""Tables of KeyService."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiftboss.services.db import naming


class KeysBase(DeclarativeBase):
    metadata = naming()


class ApiKeyRow(KeysBase):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index(
            "uq_api_keys_name_active", "name", unique=True,
            sqlite_where=text("revoked IS NULL"), postgresql_where=text("revoked IS NULL"),
        ),
    )

    #: The public part of the key, which finds the row without scanning.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    pool: Mapped[str] = mapped_column(String(255), default="")
    salt: Mapped[str] = mapped_column(String(64))
    #: SHA-256 of salt and secret, hex; the secret itself is never stored.
    hash: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
