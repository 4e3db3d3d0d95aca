"""Which users a canary serves: a stable share, decided by a hash of the user id.

The same user always lands on the same side (their experience does not flip between requests),
and the share is close to the configured one for any large set of ids.
"""

from __future__ import annotations

import hashlib

_SALT = b"recsys-canary:"


def bucket(user_id: str) -> float:
    """A number in [0, 1) fixed by the user id."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=_SALT).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_canary(user_id: str | None, share: float) -> bool:
    return user_id is not None and share > 0 and bucket(user_id) < share
