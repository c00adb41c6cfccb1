"""Where a run's wall time goes, phase by phase, in one process (no profiler: it slows the calls).

    LEVIT_BENCH_CACHE=DIR python benchmarks/main_command_phases.py --device cpu --model levit_256

Runs ``levit-bench`` with the arguments given, with the phases of ``bench`` wrapped so that each
adds its wall seconds and its count to a tally printed on stderr at exit: imports, preparation
(``prepare.Subject.prepare``, with its eager reference logits and each backend's ``prepare``), the
per-entry warm-up (``bench._Run._warm``), the untimed warm-up round, the re-warms, the timed calls,
the canary.  Nested phases overlap (``_time_group`` holds the round phases).  Figures:
docs/performance.md.  ``benchmarks/main_command_time.py`` times the command as a user runs it.
"""
from __future__ import annotations

import atexit
import collections
import sys
import time
from collections.abc import Callable

START = time.perf_counter()

from levit_bench import bench, prepare, schedule  # noqa: E402 - imports are a phase: timed from START
from levit_bench.backends import BACKENDS  # noqa: E402
from levit_bench.cli import main  # noqa: E402

IMPORTED = time.perf_counter()
seconds: dict[str, float] = collections.defaultdict(float)
counts: collections.Counter[str] = collections.Counter()


def _tallied(label: str, f: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - t
            counts[label] += 1
    return wrapper


PHASES = [(prepare.Subject, "prepare"), (prepare.Subject, "reference_logits"), (prepare, "build"),
          (bench._Run, "_warm"), (bench._Run, "_time_group"), (schedule, "_warmup_round"),
          (schedule, "rewarm"), (schedule, "time_calls"), (schedule, "_canary"), (bench, "_peak")]
for owner, name in PHASES:
    setattr(owner, name, _tallied(f"{owner.__name__.rsplit('.', 1)[-1]}.{name}", getattr(owner, name)))
for backend_name, backend in BACKENDS.items():
    backend.prepare = _tallied(f"backend prepare [{backend_name}]", backend.prepare)


@atexit.register
def _report() -> None:
    print(f"imports {IMPORTED - START:.1f} s, total {time.perf_counter() - START:.1f} s", file=sys.stderr)
    for label, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {label:36s} {s:7.2f} s  ×{counts[label]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
