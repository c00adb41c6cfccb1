"""Does every worker process time an entry at the same speed?  glibc's allocator as found against
the steady heap (``levit_bench.allocator``), side by side in the same interleaved rounds.

Both configurations run as the two sides of one ``levit-bench ab`` (``executions.execute_ab``): the
base side's K workers with ``LEVIT_BENCH_ALLOCATOR=as-found`` (glibc's dynamic mmap threshold), the
new side's K workers with the steady heap, process k of both adjacent in every round.  For each side
it prints every process's median call time over its rounds, the spread (slowest process over
fastest) and the process SD (the SD of the processes' mean log round medians beyond what their
rounds explain): the per-process offset a one-process run, or each side of a one-process ``ab``,
carries whole.  Then the ab verdict of steady against as found (its speed ratio: what the setting
changes).

    PYTHONPATH=$PWD python benchmarks/allocator_processes.py --processes 6 --rounds 8 \\
        --model levit_128s --backend torch --batch-size 16 --threads 1 --min-time 2

Extra arguments are ``levit-bench ab``'s selection and timing flags.  Say which state the machine
was in (quiet, a noisy neighbour): the process SD is the allocator's only on a machine whose
neighbours are steady for the minutes it runs.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from levit_bench.allocator import OPT_OUT_ENV  # noqa: E402
from levit_bench.cli.ab import ab_parser, verdict  # noqa: E402
from levit_bench.cli.front import resolve, resolve_timing  # noqa: E402
from levit_bench.executions import Side, execute_ab  # noqa: E402
from levit_bench.gate import by_process  # noqa: E402
from levit_bench.results import Entry  # noqa: E402


def process_figures(entry: Entry) -> dict:
    """Per process: median call time (ms) over its rounds; the spread and the SD beyond rounds."""
    rounds = by_process(entry, entry.timing.per_image_rounds())
    logs = [np.log([float(np.median(r)) * entry.timing.images_per_call for r in p]) for p in rounds]
    means = np.array([x.mean() for x in logs])
    within = float(np.mean([x.var(ddof=1) / x.size for x in logs]))  # what the rounds explain
    beyond = max(0.0, float(means.var(ddof=1)) - within)
    return {"ms": [round(1000 * math.exp(float(np.median(x))), 1) for x in logs],
            "spread": float(np.exp(means.max() - means.min())), "process_sd": math.sqrt(beyond),
            "round_sd": float(np.sqrt(np.mean([x.var(ddof=1) for x in logs])))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=6, help="workers per configuration (default 6)")
    args, ab_args = p.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ab = ab_parser().parse_args(["--base", sys.executable, "--new", sys.executable, "--out", tmp,
                                     "--processes", str(args.processes), *[a for a in ab_args if a != "--"]])
    selection = resolve(ab)
    timing, schedule = resolve_timing(ab)
    run = execute_ab(selection, timing, schedule, Side("base", env={OPT_OUT_ENV: "as-found"}), Side("new"),
                     processes=args.processes)
    print(f"seed {schedule.seed}; {args.processes} processes per configuration")
    for base, new in run.pairs:
        print(base.label())
        for name, entry in (("as found", base), ("steady  ", new)):
            if not entry.ok or not entry.timing:
                print(f"  {name}: {entry.status} {entry.reason}")
                continue
            f = process_figures(entry)
            print(f"  {name}: per process {f['ms']} ms; spread {f['spread']:.2f}x; process sd {f['process_sd']:.3f} "
                  f"(round sd {f['round_sd']:.3f})")
        v = verdict(base, new, 0.0)
        if "ratio" in v:
            print(f"  steady / as found: speed x{v['ratio']:.3f} (one-sided bounds {v['bounds'][0]:.3f} … "
                  f"{v['bounds'][1]:.3f}, {v['outcome']} at 0%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
