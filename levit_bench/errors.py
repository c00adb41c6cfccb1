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


def working_directory_problem() -> str | None:
    """Why relative paths cannot be resolved here (the working directory was deleted), or None."""
    import os

    try:
        os.getcwd()
    except OSError as exc:
        return (f"the working directory no longer exists ({exc.strerror or exc}); change to an existing "
                "folder and run again")
    return None


#: how allocators say they are out of memory (torch's CPU allocator, CUDA, ONNX Runtime, OpenVINO)
OOM_WORDS = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory",
             "failed to allocate memory", "bad_alloc")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator saying no (MemoryError, torch's OutOfMemoryError, or a runtime's
    error in its words: ONNX Runtime's and OpenVINO's exceptions are not RuntimeErrors)."""
    return isinstance(exc, MemoryError) or any(w in str(exc).lower() for w in OOM_WORDS)
