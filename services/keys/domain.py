"""API keys: made once, stored as a salted hash, found by their public id.

A key reads `sb_<id>_<secret>`. The id finds the row; the secret is checked against the
stored SHA-256 of salt and secret in constant time. Keys are random, so a fast hash is
enough: there is no password to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shiftboss.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from shiftboss.services.keys.models import ApiKeyRow
from shiftboss.services.names import validate_name

ROLES = ("ADMIN", "OPERATOR", "WORKER")
PREFIX = "sb_"
#: Longest expiry a key may be given, in days.
MAX_EXPIRES_DAYS = 3650
INVALID = "invalid API key: it is not a key this server issued"


@dataclass(slots=True, frozen=True)
class Identity:
    name: str
    role: str
    pool: str = ""
    expires: datetime | None = None


def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _split(key: str) -> tuple[str, str]:
    if not key.startswith(PREFIX):
        raise Unauthenticated(INVALID)
    key_id, _, secret = key[len(PREFIX) :].partition("_")
    if not key_id or not secret or len(key_id) > 32:
        raise Unauthenticated(INVALID)
    return key_id, secret


async def active_key(session: AsyncSession, name: str) -> ApiKeyRow | None:
    found = await session.execute(select(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.revoked.is_(None)))
    return found.scalars().first()


async def create_key(
    session: AsyncSession, name: str, role: str, pool: str, expires_in_days: float | None, now: datetime
) -> tuple[ApiKeyRow, str]:
    """Store a new key and return it with the key text, which is never seen again."""
    validate_name("name", name)
    if role not in ROLES:
        raise InvalidArgument(f"role: must be one of {', '.join(r.lower() for r in ROLES)}", field="role")
    if role == "WORKER" and not pool:
        raise InvalidArgument("pool: a worker key must name the pool it serves (--pool)", field="pool")
    if role != "WORKER" and pool:
        raise InvalidArgument(f"pool: only a worker key is bound to a pool, not a {role.lower()} key", field="pool")
    if pool:
        validate_name("pool", pool)
    expires = None
    if expires_in_days is not None:
        if not 0 < expires_in_days <= MAX_EXPIRES_DAYS:
            raise InvalidArgument(
                f"expires_in: {expires_in_days:g} days is outside 0 (exclusive) to {MAX_EXPIRES_DAYS}", field="expires_in"
            )
        expires = now + timedelta(days=expires_in_days)
    if await active_key(session, name) is not None:
        raise AlreadyExists(f"API key '{name}' already exists; revoke it or choose another name", field="name")
    key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
    row = ApiKeyRow(
        id=key_id, name=name, role=role, pool=pool, salt=salt, hash=digest(salt, secret), created=now, expires=expires
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent create took the name first
        raise AlreadyExists(f"API key '{name}' already exists; revoke it or choose another name", field="name") from None
    return row, f"{PREFIX}{key_id}_{secret}"


async def list_keys(session: AsyncSession) -> list[ApiKeyRow]:
    found = await session.execute(select(ApiKeyRow).order_by(ApiKeyRow.created, ApiKeyRow.name))
    return list(found.scalars())


async def revoke_key(session: AsyncSession, name: str, now: datetime) -> ApiKeyRow:
    row = await active_key(session, name)
    if row is None:
        raise NotFound(f"API key '{name}' not found (or already revoked)", field="name")
    row.revoked = now
    await session.flush()
    return row


async def authenticate(session: AsyncSession, key: str, now: datetime) -> Identity:
    """Who the key is; Unauthenticated, saying why, when it may not be used."""
    key_id, secret = _split(key)
    row = await session.get(ApiKeyRow, key_id)
    if row is None or not hmac.compare_digest(row.hash, digest(row.salt, secret)):
        raise Unauthenticated(INVALID)
    # Past this point the caller holds the secret, so saying why it fails reveals nothing.
    if row.revoked is not None:
        raise Unauthenticated(f"API key '{row.name}' was revoked at {as_utc(row.revoked):%Y-%m-%d %H:%M:%S} UTC")
    expires = as_utc(row.expires)
    if expires is not None and expires <= now:
        raise Unauthenticated(f"API key '{row.name}' expired at {expires:%Y-%m-%d %H:%M:%S} UTC")
    return Identity(row.name, row.role, row.pool, expires)
