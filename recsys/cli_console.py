"""What every `recsys` command prints with, and where it finds the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from recsys.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

# No markup: what we print holds user data (CSV cells, ids, error messages), and a cell like
# "[/x]" was parsed as a closing tag and turned the bad-line report into a traceback.
# Soft wrap: lines are left whole for the terminal to wrap; rich cut them at 80 columns
# where output is piped (a job's log), mid-figure.
out = Console(markup=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


def tagged(label: str, style: str, message: str) -> Text:
    """`label` in colour, then `message` as it is."""
    return Text.assemble((label, style), " ", message)


def db_engine() -> Engine:
    """The configured database, which must exist (commands other than `db upgrade`)."""
    from recsys.store.db import existing_engine  # sqlalchemy: not for `recsys --help`

    return existing_engine(get_settings().database_url)
