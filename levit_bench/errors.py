"""The one error type for user mistakes: the CLI shows its message and exits 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (unknown name, bad option, unreadable file).

    Its message is what the user sees; anything else raised is a bug.
    """


class CheckpointError(UserError):
    """A checkpoint file that cannot be read or does not fit the model."""


class ExportError(RuntimeError):
    """A runtime could not export or compile a model: fails that entry, not the run."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line (its first), for entry reasons and error messages."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
