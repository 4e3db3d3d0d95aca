"""API keys: client keys for writes (and reads, if configured), operator keys for operator
actions. Keys come from the environment or from the database, where only their SHA-256 is
kept: a stolen database does not yield working keys. A key is shown once, when created."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

from recsys.errors import NotFoundError, StateConflictError
from recsys.store.db import session_scope
from recsys.store.tables import api_keys

CLIENT, OPERATOR = "client", "operator"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(engine: Engine, name: str, role: str = CLIENT) -> str:
    """A new random key under `name`; returns the key (it cannot be read back later)."""
    if role not in (CLIENT, OPERATOR):
        raise StateConflictError(f"role must be {CLIENT!r} or {OPERATOR!r}, not {role!r}")
    key = f"rk_{secrets.token_urlsafe(32)}"
    with session_scope(engine) as s:
        if s.scalar(select(api_keys.c.id).where(api_keys.c.name == name)) is not None:
            raise StateConflictError(f"a key named {name!r} exists; revoke it or pick a name")
        s.execute(
            api_keys.insert().values(
                name=name, key_hash=digest(key), role=role, created_at=datetime.now(UTC)
            )
        )
    return key


def revoke(engine: Engine, name: str) -> None:
    with session_scope(engine) as s:
        revoked = s.execute(
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
            .returning(api_keys.c.id)
        ).all()
        if not revoked:
            raise NotFoundError(f"no active key named {name!r} (see: recsys keys list)")


@dataclass(frozen=True)
class KeyInfo:
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def list_keys(engine: Engine) -> list[KeyInfo]:
    with session_scope(engine) as s:
        rows = s.execute(
            select(api_keys.c.name, api_keys.c.role, api_keys.c.created_at, api_keys.c.revoked_at)
        ).all()
    return [KeyInfo(*row) for row in rows]


def active_hashes(engine: Engine) -> dict[str, str]:
    """SHA-256 of every active key -> its role."""
    with session_scope(engine) as s:
        rows = s.execute(
            select(api_keys.c.key_hash, api_keys.c.role).where(api_keys.c.revoked_at.is_(None))
        ).all()
    return dict(rows)


def label(engine: Engine, key_hash: str) -> str:
    """How the audit trail names the holder of a key: "key NAME"."""
    with session_scope(engine) as s:
        name = s.scalar(select(api_keys.c.name).where(api_keys.c.key_hash == key_hash))
    return f"key {name}" if name is not None else "an unknown key"


def matches(given: str, hashes: dict[str, str], role: str) -> bool:
    """Whether `given` is an active key of `role`. Hashes are compared in constant time."""
    wanted = digest(given)
    found = False
    for stored, stored_role in hashes.items():
        # No early exit: the time taken must not depend on where (or whether) a match is.
        found |= hmac.compare_digest(stored, wanted) and stored_role == role
    return found
