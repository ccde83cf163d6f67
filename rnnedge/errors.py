"""Typed exceptions. Every user-facing failure is one of these, with a one-line message."""

from __future__ import annotations


def brief(value: object, limit: int = 160) -> str:
    """`value`'s repr for a one-line message, at most `limit` characters: a longer one keeps its start and its end
    (an id is often a path, and a path's end is what tells it apart), joined by '...'."""
    text = repr(value)
    if len(text) <= limit:
        return text
    head = (limit - 3) // 2
    return text[:head] + "..." + text[len(text) - (limit - 3 - head):]


class RnnedgeError(Exception):
    """Base class: the CLI prints the message on one line and exits with code 2."""


class DataError(RnnedgeError, ValueError):
    """A data file is missing, malformed or inconsistent (the message names file, row and column)."""


class CheckpointError(RnnedgeError):
    """A checkpoint is corrupt, incomplete, or carries pickled code."""


class BundleError(RnnedgeError):
    """A bundle folder or manifest is invalid, or a file's hash does not match."""


class ExportError(RnnedgeError):
    """An export could not be produced or failed verification; nothing was written."""


class InputError(RnnedgeError, ValueError):
    """A sample or chunk fed to a stream has the wrong shape, dtype or non-finite values."""


class SnapshotError(RnnedgeError):
    """A state snapshot is corrupt, from another model, or of an unknown version."""


class BackendUnavailableError(RnnedgeError):
    """The requested inference backend (or execution provider) is not installed or not usable here."""


class PoolError(RnnedgeError, ValueError):
    """A pool membership error: a stream id added twice, a full pool, an id that is no key."""


class UnknownStreamError(PoolError, KeyError):
    """A stream id the pool does not hold (also a KeyError, as a mapping would raise)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
