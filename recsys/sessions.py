"""Dashboard sign-ins: one row per session, so that signing out and revoking the credential
end it, on every replica at once.

The browser holds a random session id (the cookie); the database keeps only its SHA-256 and
what the operator signed in with: a fingerprint of the operator token (changing the token
ends its sessions) or the hash of an operator key (revoking the key ends its sessions).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update

from recsys.store.db import session_scope
from recsys.store.tables import operator_sessions

TOKEN, KEY = "token", "key"
LIFETIME = timedelta(hours=12)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SignIn:
    credential: str
    """TOKEN or KEY."""
    reference: str
    """The token's fingerprint, or the key's SHA-256."""
    expires_at: datetime


def start(engine: Engine, credential: str, reference: str) -> str:
    """A new session; returns its id, for the cookie (the database never sees it)."""
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with session_scope(engine) as s:
        s.execute(
            operator_sessions.insert().values(
                session_hash=_digest(session_id),
                credential=credential,
                reference=reference,
                created_at=now,
                expires_at=now + LIFETIME,
            )
        )
    return session_id


def find(engine: Engine, session_id: str) -> SignIn | None:
    """The sign-in behind a live session id; None if unknown, ended or expired."""
    with session_scope(engine) as s:
        row = s.execute(
            select(
                operator_sessions.c.credential,
                operator_sessions.c.reference,
                operator_sessions.c.expires_at,
            ).where(
                operator_sessions.c.session_hash == _digest(session_id),
                operator_sessions.c.ended_at.is_(None),
            )
        ).first()
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires <= datetime.now(UTC):
        return None
    return SignIn(row.credential, row.reference, expires)


def end(engine: Engine, session_id: str) -> None:
    with session_scope(engine) as s:
        s.execute(
            update(operator_sessions)
            .where(operator_sessions.c.session_hash == _digest(session_id))
            .values(ended_at=datetime.now(UTC))
        )
