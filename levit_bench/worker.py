"""A worker process: prepares and times entries for a parent that drives the rounds.

``python -m levit_bench.worker`` speaks JSON lines: one request per line on stdin, one reply per
line on stdout (the worker's own stdout goes to stderr, so no library's print breaks the protocol).
The parent (``workers.py``) owns the schedule: it asks for blocks of timed calls and re-warms in its
interleaved rounds, so rounds, orders, records and statistics are the same code as in-process runs;
the worker only prepares (``prepare.outcomes``, the one preparation path) and times (``harness``).

Why processes: several per entry put per-process effects (allocation, code layout) into the interval
(Kalibera & Jones, "Rigorous benchmarking in reasonable time", ISMM 2013); a runtime that crashes
or hangs kills its worker, not the run; and ``levit-bench ab`` runs the same plan in two Python
environments, each side a worker of its own interpreter.

Protocol (version :data:`PROTOCOL`): the worker first writes a ``hello`` (protocol, levit_bench
version, python executable, the ``sysinfo`` facts); then each request ``{"op": ...}`` gets one reply
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``, except ``prepare``, which streams one
``{"outcome": ...}`` line per step before its reply.  Ops: ``prepare`` (a selection, see
:func:`selection_to_dict`), ``warm``, ``rewarm``, ``block``, ``close``, ``quit``.

Two environment variables exist for tests and benchmarks only (never for measuring):
``LEVIT_BENCH_WORKER_PLUGIN`` names a Python file the worker runs first (a test registers a fake
backend there, e.g. one that crashes); ``LEVIT_BENCH_WORKER_SLOWDOWN`` (a fraction, e.g. 0.10) makes
every timed call sleep that fraction of its own time, an injected slowdown that benchmarks use to
check the ``ab`` verdict.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from typing import IO, Any

PROTOCOL = 1
PLUGIN_ENV = "LEVIT_BENCH_WORKER_PLUGIN"
SLOWDOWN_ENV = "LEVIT_BENCH_WORKER_SLOWDOWN"


def selection_to_dict(sel: Any) -> dict[str, Any]:
    """A ``Selection`` as the ``prepare`` request carries it (every value already checked)."""
    s = sel.settings
    return {"models": list(sel.models), "backends": list(sel.backends), "batch_sizes": list(sel.batch_sizes),
            "precisions": list(sel.precisions), "weights": sel.weights, "img_size": sel.img_size,
            "cache_dir": sel.cache_dir, "paper": sel.paper,
            "only": None if sel.only is None else sorted(list(step) for step in sel.only),
            "settings": {"device": s.device, "precision": s.precision, "threads": s.threads,
                         "options": s.options.to_dict()}}


def selection_from_dict(d: dict[str, Any]) -> Any:
    from .selection import Selection
    from .spec import RuntimeOptions, Settings

    s = d["settings"]
    settings = Settings(s["device"], s["precision"], int(s["threads"]), RuntimeOptions.from_dict(s["options"]))
    return Selection(tuple(d["models"]), tuple(d["backends"]), tuple(d["batch_sizes"]), tuple(d["precisions"]),
                     settings, d.get("weights"), d.get("img_size"), d.get("cache_dir"), bool(d.get("paper")),
                     only=None if d.get("only") is None else frozenset(tuple(step) for step in d["only"]))


def _slowed(call: Any, fraction: float) -> Any:
    """The call, followed by a sleep of ``fraction`` of its own time (the test/benchmark hook)."""
    def slow() -> Any:
        start = time.perf_counter()
        out = call()
        time.sleep(fraction * (time.perf_counter() - start))
        return out

    return slow


class _Server:
    """The worker's state: prepared runners by item number, and the run's process state."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.items: dict[int, tuple[Any, Any, Any, bool]] = {}  # item -> (runner, call, first_call_s, cuda)
        self.next_item = 0
        self.state: Any = None
        self.slowdown = float(os.environ.get(SLOWDOWN_ENV) or 0.0)

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        from .backends import ExportCache
        from .prepare import Ready, outcomes
        from .runstate import run_state

        selection = selection_from_dict(req["selection"])
        cache = ExportCache(selection.cache_dir)
        if self.state is None:  # threads and inductor's cache for the worker's life (it is one run)
            self.state = run_state(selection.settings.threads, cache.runtime_dir("inductor"))
            self.state.__enter__()
        cuda = selection.settings.device == "cuda"
        for _subject, outcome in outcomes(selection, cache, selection.settings.device):
            item, self.next_item = self.next_item, self.next_item + 1
            message: dict[str, Any] = {"item": item, "identity": outcome.identity.to_dict(),
                                       "status": str(outcome.status), "facts": asdict(outcome.facts)}
            if isinstance(outcome, Ready):
                call = outcome.runner.bind(outcome.x)
                if self.slowdown > 0:
                    call = _slowed(call, self.slowdown)
                self.items[item] = (outcome.runner, call, outcome.first_call_s, cuda)
                message["images_per_call"] = outcome.identity.batch_size * outcome.runner.batches_per_call
                message["first_call_s"] = outcome.first_call_s
            else:
                message["reason"] = outcome.reason
            self.send({"outcome": message})
        return {"count": len(self.items)}

    def warm(self, req: dict[str, Any]) -> dict[str, Any]:
        import torch

        from .harness import TimingOptions, warm_up

        runner, call, first, _cuda = self.items[req["item"]]
        with torch.inference_mode():
            w = warm_up(call, TimingOptions(**req["timing"]), runner.synchronize, first)
        return {"warm": asdict(w)}

    def rewarm(self, req: dict[str, Any]) -> dict[str, Any]:
        import torch

        from .harness import rewarm

        runner, call, _first, _cuda = self.items[req["item"]]
        with torch.inference_mode():
            return {"calls": rewarm(call, float(req["seconds"]), float(req["per_call_s"]), runner.synchronize)}

    def block(self, req: dict[str, Any]) -> dict[str, Any]:
        import torch

        from .harness import time_block

        runner, call, _first, cuda = self.items[req["item"]]
        with torch.inference_mode():
            block = time_block(call, int(req["n"]), cuda=cuda, synchronize=runner.synchronize)
        return {"samples": block.samples, "cpu_s": block.cpu_s}

    def close(self, req: dict[str, Any]) -> dict[str, Any]:
        found = self.items.pop(req["item"], None)
        if found is not None:
            found[0].close()
        return {}

    def serve(self, requests: IO[str]) -> None:
        from .errors import first_line

        for line in requests:
            if not line.strip():
                continue
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                break
            handler = {"prepare": self.prepare, "warm": self.warm, "rewarm": self.rewarm, "block": self.block,
                       "close": self.close}.get(op)
            try:
                if handler is None:
                    raise ValueError(f"unknown request {op!r}")
                reply = handler(req)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - the parent fails that item, this worker goes on
                self.send({"ok": False, "error": f"{type(exc).__name__}: {first_line(exc)}"})
            else:
                self.send({"ok": True, **reply})
        for runner, *_rest in self.items.values():
            runner.close()
        if self.state is not None:
            self.state.__exit__(None, None, None)


def hello() -> dict[str, Any]:
    """What the parent records about this side: protocol, versions, interpreter, the machine facts."""
    from . import __version__, sysinfo

    facts = sysinfo.collect()
    return {"hello": PROTOCOL, "levit_bench": __version__, "python": sys.executable,
            "versions": facts["versions"], "system": facts}


def main() -> None:
    """Serve on stdin/stdout; the protocol stream is a private copy of stdout, and fd 1 becomes
    stderr, so whatever a library prints cannot corrupt a reply."""
    from . import allocator

    allocator.steady()  # as the parent's command does: this worker's heap reused like every other's
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    plugin = os.environ.get(PLUGIN_ENV)
    if plugin:  # tests only: register a fake backend (see the module docstring)
        import runpy

        runpy.run_path(plugin)
    server = _Server(protocol)
    server.send(hello())
    try:
        server.serve(sys.stdin)
    except KeyboardInterrupt:  # the parent was interrupted: its process group got the signal too
        pass
    # the runners are closed and every reply is out: the interpreter's teardown (torch's and the
    # runtimes' finalizers, over a second per worker) would only make the parent wait
    protocol.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
