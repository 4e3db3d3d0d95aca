"""Errors that carry a message a user can act on. The CLI prints them; the API maps them to 4xx."""

from __future__ import annotations

from dataclasses import dataclass


class RecsysError(Exception):
    """Base class: the message says what is wrong and, where it can, what to do next."""


class ConfigError(RecsysError):
    """A setting or hyper-parameter is unusable."""


class NotFoundError(RecsysError):
    """A user, item or model version that the caller named does not exist."""


class InvalidInputError(RecsysError):
    """A request is well-formed but names something it may not (an item not in the catalog)."""


class StateConflictError(RecsysError):
    """The action does not fit the current state (approving a version already retired)."""


class NoModelError(NotFoundError):
    """No model has been trained or promoted yet."""


class EmptyDataError(RecsysError):
    """There is nothing (or too little) to train or evaluate on."""


class TrainingDivergedError(RecsysError):
    """The loss became NaN or infinite: the learning rate is too high or the data is broken."""


class ArtifactError(RecsysError):
    """A model artifact is missing, truncated, or fails its checksum."""


class DatabaseUnavailableError(RecsysError):
    """The database cannot be reached right now; the request can be retried."""


@dataclass(frozen=True)
class RowError:
    """One bad line of an input file. `line` is 1-based and counts the header as line 1."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ValidationFailedError(RecsysError):
    """An input file has bad rows; nothing from it was applied."""

    def __init__(self, source: str, errors: list[RowError], total_bad: int) -> None:
        self.source = source
        self.errors = errors
        self.total_bad = total_bad
        shown = "\n".join(f"  {e}" for e in errors)
        more = f"\n  ... and {total_bad - len(errors)} more" if total_bad > len(errors) else ""
        super().__init__(f"{source}: {total_bad} bad row(s); nothing was written.\n{shown}{more}")
