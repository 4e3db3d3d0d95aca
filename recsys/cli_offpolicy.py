"""`recsys evaluate --off-policy`: a model version judged on logged traffic, printed."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from recsys.config import Settings
from recsys.data import timestamps
from recsys.errors import ConfigError
from recsys.exploration import ExplorePolicy
from recsys.offpolicy.estimators import Interval, NoSupportError
from recsys.offpolicy.judge import OffPolicyReport
from recsys.store.db import existing_engine

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([hd])$")


def parse_since(text: str | None) -> datetime | None:
    """'36h', '7d', or an ISO 8601 date or time (UTC unless it says otherwise)."""
    if text is None:
        return None
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = float(relative[1]), relative[2]
        return timestamps.hours_ago(amount * (24 if unit == "d" else 1))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither a duration (36h, 7d) nor an ISO 8601 time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _interval(found: Interval | None) -> tuple[str, str]:
    if found is None:
        return "-", "-"
    return f"{found.value:.4f}", f"[{found.low:.4f}, {found.high:.4f}]"


def print_report(report: OffPolicyReport, out: Console) -> None:
    policy = ExplorePolicy.from_json(report.target_policy)
    out.print(
        f"off-policy estimate of {report.version}, served with exploration "
        f"{policy.share:g} (temperature {policy.temperature:g})"
    )
    out.print(f"judged on {report.judged_on}: {report.lists} lists")
    for reason, n in report.skipped.items():
        if n:
            out.print(f"  left out: {n} lists ({reason})")
    found = report.estimate
    if found is None:
        raise NoSupportError(report.refused or "no estimate")
    table = Table("positive feedback per slot", "estimate", "95 % interval")
    for name, value in (("IPS", found.ips), ("SNIPS", found.snips), ("DR", found.dr)):
        table.add_row(name, *_interval(value))
    table.add_row("mean rating (SNIPS)", *_interval(report.mean_rating))
    for version, own in sorted(report.logging.items()):
        rate = Interval(**own["positive_rate"])
        table.add_row(f"observed: {version} ({own['lists']} lists)", *_interval(rate))
    out.print(table)
    out.print(
        f"effective sample size {found.effective_sample_size:.0f} of {found.lists} lists; "
        f"largest weight {found.max_weight:.1f} (clipped at {found.clip:g}: {found.clipped} "
        f"slots); target slots without logging support {found.unsupported_share:.2%}"
    )


def off_policy(
    settings: Settings, version: str, since: str | None, explore: float | None, out: Console
) -> None:
    from recsys.offpolicy.run import off_policy_report

    target = None if explore is None else settings.explore_policy_at(explore)
    engine = existing_engine(settings.database_url)
    print_report(off_policy_report(engine, settings, version, parse_since(since), target), out)
