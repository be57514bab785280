"""The scheduler's own key: it signs run tokens and encrypts secret job variables.

The key is `SHIFTBOSS_SECRET_KEY` (32 random bytes, URL-safe base64) when set; else, on
SQLite (one server), the file `secret.key` in the server's home, made on first start,
readable by its user alone; else, on PostgreSQL, where replicas must share it (tokens
signed and values sealed by one are read by the others), a key the first replica stores
in the scheduler's database: set the setting to keep it out of the database. From it, two keys are derived, one per use, so a token's
signature says nothing about an encrypted value and the reverse.

A run token reads `sbr_<run id>_<lease>_<signature>`: stateless, checked with the key
alone; whether it may still be used (its run not ended, its lease current) is the
scheduler's question, asked of the run when the token is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from shiftboss.errors import FailedPrecondition, Unauthenticated

__all__ = ["RUN_TOKEN_PREFIX", "Seal", "decode_key", "is_run_token", "new_key_text"]

RUN_TOKEN_PREFIX = "sbr_"
KEY_FILE = "secret.key"
INVALID_RUN_TOKEN = "invalid run token: it is not one this scheduler issued"


def is_run_token(key: str) -> bool:
    return key.startswith(RUN_TOKEN_PREFIX)


def decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode() + b"==")
    except (ValueError, TypeError):
        key = b""
    if len(key) < 32:
        raise ValueError(f"{where}: must be at least 32 random bytes in URL-safe base64 (make one with: openssl rand -base64 32)")
    return key


def new_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


class Seal:
    def __init__(self, key: bytes) -> None:
        self.rekey(key)

    def rekey(self, key: bytes) -> None:
        """Use another key (the replicas' shared one, read once the database is up)."""
        self._signing = hmac.new(key, b"shiftboss run token", hashlib.sha256).digest()
        sealing = hmac.new(key, b"shiftboss secret values", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(sealing))

    @classmethod
    def load(cls, configured: str, home: str) -> Seal:
        """The key from the setting, else from the home's key file, made when missing."""
        if configured:
            return cls(decode_key(configured, "secret_key"))
        path = Path(home) / KEY_FILE
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return cls(decode_key(path.read_text(), str(path)))
        with os.fdopen(fd, "w") as out:
            out.write(new_key_text() + "\n")
        return cls(decode_key(path.read_text(), str(path)))

    # ------------------------------------------------------------ run tokens

    def _signature(self, run_id: str, lease: int) -> str:
        mac = hmac.new(self._signing, f"{run_id}:{lease}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def run_token(self, run_id: str, lease: int) -> str:
        return f"{RUN_TOKEN_PREFIX}{run_id}_{lease}_{self._signature(run_id, lease)}"

    def check_run_token(self, token: str) -> tuple[str, int]:
        """(run id, lease) of a token this key signed; Unauthenticated otherwise."""
        run_id, _, rest = token[len(RUN_TOKEN_PREFIX) :].partition("_")
        lease_text, _, signature = rest.partition("_")
        if not run_id or len(run_id) > 64 or not lease_text.isdigit() or len(lease_text) > 19:
            raise Unauthenticated(INVALID_RUN_TOKEN)
        lease = int(lease_text)
        if not hmac.compare_digest(signature.encode(), self._signature(run_id, lease).encode()):
            raise Unauthenticated(INVALID_RUN_TOKEN)
        return run_id, lease

    # ------------------------------------------------------------ secret values

    def seal(self, value: Any) -> str:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()

    def open(self, sealed: str) -> Any:
        try:
            return json.loads(self._fernet.decrypt(sealed.encode()))
        except (InvalidToken, ValueError, TypeError):
            raise FailedPrecondition(
                "job_variables: a secret value cannot be decrypted with this server's secret key "
                "(was SHIFTBOSS_SECRET_KEY or secret.key changed?)",
                field="job_variables",
            ) from None
