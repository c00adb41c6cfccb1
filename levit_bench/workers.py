"""The parent's side of worker processes (``worker.py``): start one, prepare a selection in it, and
turn each prepared step into a ``schedule.Timed`` item whose block and re-warm run in the worker.

The rounds stay in this process (``schedule.run_rounds``): the order, the records and the
statistics are the in-process run's.  A worker that dies (a signal, an exit) or does not answer in
time fails the items it holds, with the reason; the items of other workers go on, and what was
timed before stays in the items.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import Block, TimingOptions, Warmup
from .schedule import Timed
from .worker import PROTOCOL, selection_to_dict

#: how long a worker may take to start (import torch and the runtimes) and say hello
START_TIMEOUT_S = 300.0
#: how long preparing one step may take (an export, a compile)
PREPARE_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Timeouts:
    """A request's time limit: ``factor`` times what it should take (from the item's measured call
    time), never under ``floor_s``; generous, since a limit hit kills the worker."""

    floor_s: float = 60.0
    factor: float = 10.0

    def limit(self, expected_s: float) -> float:
        return max(self.floor_s, self.factor * expected_s)


class WorkerDied(RuntimeError):
    """The worker is gone (or was killed for not answering); the message says why."""


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


@dataclass
class Worker:
    """One worker process and the line protocol to it."""

    proc: subprocess.Popen
    stderr: Any  # a temporary file: the worker's stderr, read for the reason it exited
    timeouts: Timeouts = field(default_factory=Timeouts)
    name: str = ""
    hello: dict[str, Any] = field(default_factory=dict)
    dead: str | None = None  # why it is gone
    _buffer: bytes = b""
    _quit_sent: bool = False

    @classmethod
    def start(cls, python: str = sys.executable, path: str | None = None, *, name: str = "",
              env: dict[str, str] | None = None, timeouts: Timeouts = Timeouts(),
              cpus: set[int] | None = None) -> Worker:
        """Start ``python -m levit_bench.worker``; ``path`` goes first on its PYTHONPATH (another
        checkout), then this levit_bench's root unless the interpreter has its own.  Waits for hello."""
        return cls.spawn(python, path, name=name, env=env, timeouts=timeouts, cpus=cpus).greet()

    @classmethod
    def spawn(cls, python: str = sys.executable, path: str | None = None, *, name: str = "",
              env: dict[str, str] | None = None, timeouts: Timeouts = Timeouts(),
              cpus: set[int] | None = None) -> Worker:
        """Start the process without waiting for its hello (:meth:`greet`): workers spawned together
        import torch and the runtimes at the same time, not one after another."""
        from . import allocator

        heap = {} if (env or {}).get(allocator.OPT_OUT_ENV) == "as-found" else allocator.worker_environment()
        environ = {**os.environ, **heap, **(env or {})}
        roots = [p for p in (path, environ.get("PYTHONPATH"), _package_root()) if p]
        environ["PYTHONPATH"] = os.pathsep.join(roots)
        stderr = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen([python, "-m", "levit_bench.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=stderr, env=environ, bufsize=0)
        except OSError as exc:
            stderr.close()
            raise WorkerDied(f"cannot start {python}: {exc.strerror or exc}") from None
        worker = cls(proc, stderr, timeouts, name)
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        return worker

    def greet(self) -> Worker:
        """Wait for the worker's hello and check its protocol (a mismatch stops it: WorkerDied)."""
        if not self.hello:
            self.hello = self._read(START_TIMEOUT_S)
        if self.hello.get("hello") != PROTOCOL:
            self.stop()
            raise WorkerDied(f"{self.proc.args[0]} speaks worker protocol {self.hello.get('hello')!r}, this "
                             f"levit-bench {PROTOCOL} (levit_bench {self.hello.get('levit_bench')})")
        return self

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request, return its reply; a worker error is a RuntimeError (that item fails)."""
        self._send(message)
        reply = self._read(timeout_s)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error") or "the worker refused the request")
        return reply

    def prepare(self, selection: Any, on_outcome: Any = None) -> list[dict[str, Any]]:
        """Every step of ``selection`` prepared in the worker: one outcome dict per step, in plan order
        (``item``, ``identity``, ``status``, ``reason``, ``facts``, ``images_per_call``).  Steps the
        worker did not reach because it died are missing; ``dead`` says why."""
        self._send({"op": "prepare", "selection": selection_to_dict(selection)})
        found: list[dict[str, Any]] = []
        try:
            while True:
                line = self._read(PREPARE_TIMEOUT_S)
                if "outcome" in line:
                    found.append(line["outcome"])
                    if on_outcome is not None:
                        on_outcome(line["outcome"])
                elif not line.get("ok"):
                    raise RuntimeError(line.get("error") or "preparing failed")
                else:
                    return found
        except WorkerDied:
            return found

    def warm(self, item: int, timing: TimingOptions, first_call_s: float | None) -> Warmup:
        from dataclasses import asdict

        expected = timing.warmup_s + max(timing.warmup_calls, 1) * (first_call_s or 0.0)
        reply = self.request({"op": "warm", "item": item, "timing": asdict(timing)}, self.timeouts.limit(expected))
        return Warmup(**reply["warm"])

    def ask_to_quit(self) -> None:
        """Send quit without waiting (:meth:`stop` waits); a worker already gone is left to stop."""
        if self.proc.poll() is None and not self._quit_sent:
            try:
                self._send({"op": "quit"})
                self._quit_sent = True
            except WorkerDied:
                pass

    def stop(self) -> None:
        """Ask the worker to quit; kill it if it does not within a few seconds."""
        if self.proc.poll() is None:
            try:
                self.ask_to_quit()
                self.proc.wait(timeout=10)
            except (WorkerDied, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def _send(self, message: dict[str, Any]) -> None:
        if self.dead:
            raise WorkerDied(self.dead)
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died()

    def _read(self, timeout_s: float) -> dict[str, Any]:
        """The next reply line, within ``timeout_s``; a worker gone or silent raises WorkerDied."""
        if self.dead:
            raise WorkerDied(self.dead)
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                self.dead = f"worker did not answer within {timeout_s:.0f} s"
                raise WorkerDied(self.dead)
            ready, _w, _x = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._died()
            self._buffer += chunk
        line, _nl, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _died(self) -> None:
        code = self.proc.wait()
        if code < 0:
            self.dead = f"worker killed by {signal.Signals(-code).name}"
        else:
            self.dead = f"worker exited with status {code}" + (f": {last}" if (last := self._last_error()) else "")
        raise WorkerDied(self.dead)

    def _last_error(self) -> str:
        self.stderr.seek(0)
        lines = [ln.strip() for ln in self.stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""


def _never() -> None:
    raise RuntimeError("a worker's item is timed in its worker")


def remote_item(worker: Worker, outcome: dict[str, Any], label: str, process: int | None = None,
                together: object = None, threads: int | None = None) -> Timed:
    """A ``schedule.Timed`` item whose block and re-warm run in ``worker`` (``outcome``: one of
    :meth:`Worker.prepare`'s, ready); warm it with :func:`warm_remote` before its rounds.  ``threads``:
    the entry's threads on the CPU (at one, its blocks' on-CPU share is recorded), None on a GPU."""
    item = outcome["item"]
    timed = Timed(label, _never, lambda: None, False, process=process, together=together, threads=threads)

    def block(n: int) -> Block:
        per_call = timed.warm.per_call_s if timed.warm else 0.0
        reply = worker.request({"op": "block", "item": item, "n": n}, worker.timeouts.limit(n * per_call))
        return Block(reply["samples"], reply.get("cpu_s"))  # a worker of an older version sends no cpu_s

    def rewarm(seconds: float, per_call_s: float) -> int:
        return worker.request({"op": "rewarm", "item": item, "seconds": seconds, "per_call_s": per_call_s},
                              worker.timeouts.limit(seconds + per_call_s))["calls"]

    timed.block, timed.rewarm = block, rewarm
    return timed


def warm_remote(timed: Timed, worker: Worker, item: int, timing: TimingOptions, first_call_s: float | None) -> None:
    """Warm the item up in its worker (its per-call time sizes its blocks and its time limits); a
    failure, or the worker's death, is the item's error."""
    try:
        timed.warm = worker.warm(item, timing, first_call_s)
    except RuntimeError as exc:  # WorkerDied included
        timed.error = str(exc)
