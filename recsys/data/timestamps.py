"""When a rating or an event may have happened: one rule for CSV files and the API.

From the Unix epoch to a few minutes from now (clocks of clients and servers disagree a
little). A timestamp outside would pass through the whole system and break it far from the
cause: Python's datetime cannot hold year 5138, so the monitoring summary failed, and a
rating dated in the far future could never be replaced by later feedback.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EARLIEST_S = 0
"""1970-01-01T00:00:00Z."""
CLOCK_SLACK_S = 300
"""How far ahead of this server's clock a timestamp may lie."""


def latest_s() -> int:
    return int(time.time()) + CLOCK_SLACK_S


def problem(seconds: float) -> str | None:
    """Why Unix time `seconds` is refused, or None."""
    if seconds < EARLIEST_S:
        return "lies before 1970-01-01T00:00:00Z"
    if seconds > latest_s():
        return f"lies in the future (more than {CLOCK_SLACK_S // 60} minutes from now)"
    return None


def check(when: datetime) -> datetime:
    """`when` with a zone (UTC if it had none), or ValueError with the reason."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    why = problem(when.timestamp())
    if why is not None:
        raise ValueError(f"{when.isoformat()} {why}")
    return when


def iso(when: datetime | None) -> str | None:
    """ISO 8601 in UTC with a "Z", as pydantic writes the times of every other answer.
    SQLite hands back naive datetimes, which are stored as UTC."""
    if when is None:
        return None
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def unix(when: datetime) -> float:
    """Unix seconds of a stored time; SQLite hands back naive datetimes, stored as UTC."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def iso_seconds(seconds: int) -> str | None:
    """Unix seconds as `iso`; None for one a datetime cannot hold (stored before ingestion
    bounded timestamps)."""
    try:
        return iso(datetime.fromtimestamp(seconds, UTC))
    except (OverflowError, OSError, ValueError):
        return None


def hours_ago(hours: float) -> datetime:
    """Now less `hours`, no earlier than the epoch (nothing stored is older): a window as
    long as 99999999999 days means "everything", not an overflow."""
    epoch = datetime.fromtimestamp(EARLIEST_S, UTC)
    now = datetime.now(UTC)
    if hours >= (now - epoch) / timedelta(hours=1):
        return epoch
    return now - timedelta(hours=hours)
