"""The one writer of one results file for the length of a command (claim, atomic saves, release)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .atomic import sibling_name, target_problem
from .errors import UserError
from .results import RunRecord


class ResultsWriter:
    """The one writer of one results file for the length of a run.

    It never replaces a file that exists unless told to (``replace``), refuses a file another run is
    writing (an advisory lock beside it, released by the kernel if the process dies), and turns
    write errors into one-line UserErrors.  Every save is atomic, so whatever was saved last stays
    a valid file whatever happens after.  A file it replaces (``--force``) stays in place until there is
    something measured to put there, and an empty file it started for a command that then stopped on
    bad input is removed (:meth:`abandon`).
    """

    def __init__(self, path: str | os.PathLike, replace: bool = False, resume: bool = False):
        self.path = Path(path)
        self.replace = replace or resume
        self.resume = resume  # ``run --resume``: the file must exist, and is completed in place
        self._lock: Any = None
        self._existed = False  # the file was there when claimed (it is then replaced only by content)
        self._wrote = self._wrote_content = self._failed = False

    def claim(self) -> ResultsWriter:
        """Take the file for this run (UserError when it cannot be had); call before measuring."""
        if os.path.isdir(self.path):
            raise UserError(f"--out {self.path}: is a folder; name a .json file or a folder without the .json suffix")
        if self.resume and not self.path.is_file():
            raise UserError(f"--resume {self.path}: no such results file")
        problem = target_problem(self.path)
        if problem:
            raise UserError(f"--out {self.path}: cannot write there ({problem})")
        lock_path = sibling_name(self.path, ".", ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = open(lock_path, "a+b")  # noqa: SIM115 - held for the run
        except OSError as exc:
            raise UserError(f"--out {self.path}: cannot write there ({exc.strerror or exc})") from None
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): the existence check below still holds
            pass
        except OSError:
            self._lock.close()
            self._lock = None
            raise UserError(f"--out {self.path}: another levit-bench run is writing this file") from None
        if self.path.exists() and not self.replace:
            self.release()
            raise UserError(f"--out {self.path}: exists, and levit-bench never replaces a results file unasked; "
                            "choose another --out, or pass --force to replace it")
        self._existed = self.path.exists()
        return self

    def save(self, record: RunRecord) -> None:
        content = bool(record.results or record.accuracy or record.profiles or record.load)
        if self._existed and not content and not self._wrote_content:
            return  # nothing measured yet: the file being replaced stays until there is
        try:
            record.save(self.path)
        except OSError as exc:
            self._failed = True
            raise UserError(f"cannot write the results file {self.path}: {exc.strerror or exc}; "
                            "the last complete save (if any) is intact") from None
        self._wrote, self._wrote_content = True, self._wrote_content or content

    def abandon(self) -> None:
        """The command stopped on bad input: remove the file it started if it holds nothing measured
        (a file that was there before, one with results, or the last save before a failing write stays)."""
        if self._wrote and not self._wrote_content and not self._existed and not self._failed:
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Unlock (the lock file stays: removing it would let two writers lock different files)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
