"""Saved state: one body of bytes per name, the newest save winning (`tables.snapshots`).

What a body holds is its writer's business; the store only keeps it. Replicas that save
under the same name overwrite each other, which is what they want: each save is a complete
state as of its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recsys.store.queries import dialect_insert
from recsys.store.tables import snapshots


@dataclass(frozen=True)
class Snapshot:
    saved_at: datetime
    body: bytes


def save(*, session: Session, name: str, body: bytes, saved_at: datetime) -> None:
    stmt = dialect_insert(session, snapshots).values(name=name, body=body, saved_at=saved_at)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"body": stmt.excluded.body, "saved_at": saved_at}
    )
    session.execute(stmt)


def load(*, session: Session, name: str) -> Snapshot | None:
    row = session.execute(
        select(snapshots.c.saved_at, snapshots.c.body).where(snapshots.c.name == name)
    ).first()
    return None if row is None else Snapshot(row.saved_at, bytes(row.body))
