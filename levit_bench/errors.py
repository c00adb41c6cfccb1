"""The one error type for user mistakes: the CLI shows its message and exits 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (unknown name, bad option, unreadable file).

    Its message is what the user sees; anything else raised is a bug.
    """


class CheckpointError(UserError):
    """A checkpoint file that cannot be read or does not fit the model."""
