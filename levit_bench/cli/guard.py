"""What the dispatcher wraps every command in, so no environment turns into a traceback or a lost round.

* SIGTERM and SIGHUP (``timeout``, CI cancellation, ``docker stop``, systemd, Slurm, a closed
  terminal) raise :class:`Terminated`, a KeyboardInterrupt: every command already handles Ctrl-C by
  keeping what it finished, so the same path keeps the finished rounds; the exit code is still the
  signal's own (128 + its number: 143, 129).
* stdout and stderr are wrapped: a closed stream, a broken pipe (``| head -1``), a full disk
  (``>/dev/full``) or an encoding that lacks a character (``PYTHONIOENCODING=ascii``) never
  stops the command.  What cannot be encoded is replaced; after a write fails, later writes to that
  stream are dropped and the command carries on (a run still saves every round).  A lost stdout
  is then said on stderr and the exit code is 141 (broken pipe) or 2, never 1 (a regression).
* The standard descriptors 0-2, when closed at start, are pointed at /dev/null, so a file opened
  later (a results file, a lock) can never become "stderr" for a library writing to descriptor 2.
* A deleted working directory is said in one line (``errors.working_directory_problem``, checked
  already when the package is imported: torch's oneMKL aborts the process otherwise).
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

EXIT_BROKEN_PIPE = 128 + 13  # what a program killed by SIGPIPE exits with: `| head` closed the pipe
#: the signals handled as SIGINT is (each exits 128 + its number)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the signal found the program, as Ctrl-C's KeyboardInterrupt is."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def reserve_standard_fds() -> None:
    """Point closed descriptors 0, 1 and 2 at /dev/null (Python then has ``sys.stdout`` or
    ``sys.stderr`` None, which :class:`GuardedStream` handles)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            except OSError:
                pass


class GuardedStream:
    """A text stream that never raises on write: unencodable characters are replaced, and the first
    failing write (closed, broken pipe, disk full) is remembered and silences the stream."""

    def __init__(self, inner: Any, name: str):
        self.inner = inner
        self.name = name
        self.error: OSError | None = None if inner is not None else OSError(errno.EBADF, "it is closed")
        self.written = False  # something was meant for it (a lost stdout matters only then)

    def write(self, text: str) -> int:
        if text:
            self.written = True
        if self.error is None:
            try:
                return self.inner.write(text)
            except UnicodeEncodeError:
                encoding = getattr(self.inner, "encoding", None) or "ascii"
                return self._write_safely(text.encode(encoding, "replace").decode(encoding))
            except (OSError, ValueError) as exc:
                self._fail(exc)
        return len(text)

    def _write_safely(self, text: str) -> int:
        try:
            return self.inner.write(text)
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.error is None and self.inner is not None:
            try:
                self.inner.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def isatty(self) -> bool:
        try:
            return self.error is None and bool(self.inner.isatty())
        except (OSError, ValueError, AttributeError):
            return False

    def _fail(self, exc: Exception) -> None:
        self.error = exc if isinstance(exc, OSError) else OSError(errno.EBADF, str(exc) or "it is closed")
        with contextlib.suppress(Exception):  # what is still buffered would fail again at exit
            fd = self.inner.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer, ... as the wrapped stream has them
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)


@contextlib.contextmanager
def guarded_streams() -> Iterator[tuple[GuardedStream, GuardedStream]]:
    """``sys.stdout`` and ``sys.stderr`` wrapped for the length of a command, then restored."""
    old = sys.stdout, sys.stderr
    out, err = GuardedStream(old[0], "standard output"), GuardedStream(old[1], "standard error")
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        yield out, err
    finally:
        with contextlib.suppress(Exception):
            out.flush()
            err.flush()
        sys.stdout, sys.stderr = old


@contextlib.contextmanager
def stop_signals_as_interrupts() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP raise :class:`Terminated` while the command runs; yields the signals received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: Any) -> None:
        received.append(signum)
        raise Terminated(signum)

    old = {}
    for sig in STOP_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                old[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def output_exit_code(code: int, out: GuardedStream) -> int:
    """The exit code once the command is done: its own, unless it succeeded but its stdout was lost
    (141 for a broken pipe, said by nothing, as ``| head`` expects; 2 otherwise, said on stderr)."""
    if code != 0 or out.error is None or not out.written:
        return code
    if out.error.errno == errno.EPIPE:
        return EXIT_BROKEN_PIPE
    sys.stderr.write(f"levit-bench: error: cannot write to standard output: {out.error.strerror or out.error}; "
                     "what was to be printed is lost (a results file, if any, is complete)\n")
    return 2
