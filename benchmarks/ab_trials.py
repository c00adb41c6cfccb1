"""How often ``levit-bench ab`` flags an A/A pair (false flags) and an A/B pair with a slowdown
injected on the new side (power): N seeded trials each, printed as flags/N.

The slowdown goes through ``LEVIT_BENCH_WORKER_SLOWDOWN`` (a benchmark hook read by the new side's
worker: each timed call sleeps that fraction of its own time), so both sides run the same code.

    PYTHONPATH=$PWD python benchmarks/ab_trials.py --trials 10 --slowdown 0.10 \\
        --model levit_128s --backend torch --batch-size 16 --threads 1 --rounds 8 --min-time 2

Each trial is one ``ab`` (two worker processes, prepared and timed); extra arguments after ``--``
are given to it as they are.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from levit_bench.executions import Side, execute_ab
from levit_bench.worker import SLOWDOWN_ENV


def trial(ab_args: list[str], seed: int, slowdown: float, out: Path, keep: Path | None = None) -> list[str]:
    """One ``ab`` run at ``seed`` with ``slowdown`` on the new side; the verdicts' outcomes (with
    ``keep``: both sides' entries written there as JSON, for re-analysis)."""
    from levit_bench.cli.ab import ab_parser, verdict
    from levit_bench.cli.front import resolve, resolve_timing

    args = ab_parser().parse_args(["--base", sys.executable, "--new", sys.executable, "--seed", str(seed),
                                   "--out", str(out), *ab_args])
    selection = resolve(args)
    timing, schedule = resolve_timing(args)
    env = {SLOWDOWN_ENV: str(slowdown)} if slowdown else {}
    run = execute_ab(selection, timing, schedule, Side("base"), Side("new", env=env), processes=args.processes)
    verdicts = [verdict(b, n, args.fail_above) for b, n in run.pairs]
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"{'ab' if slowdown else 'aa'}-{seed}.json").write_text(json.dumps(
            {"slowdown": slowdown, "seed": seed, "verdicts": verdicts,
             "results": [e.to_dict() for pair in run.pairs for e in pair]}))
    return [v["outcome"] for v in verdicts]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--slowdown", type=float, default=0.10, help="fraction injected on the new side of A/B trials")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--only", choices=("aa", "ab"), default=None, help="run only the A/A or only the A/B trials")
    p.add_argument("--keep", type=Path, default=None, help="write each trial's entries and verdicts into this folder")
    args, ab_args = p.parse_known_args(argv)
    ab_args = [a for a in ab_args if a != "--"]
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        kinds = {"aa": [("A/A", 0.0)], "ab": [(f"A/B {args.slowdown:.0%}", args.slowdown)]}
        for name, slowdown in kinds.get(args.only, kinds["aa"] + kinds["ab"]):
            outcomes = [trial(ab_args, args.first_seed + k, slowdown, Path(tmp) / f"{k}.json", args.keep)
                        for k in range(args.trials)]
            flagged = sum("fail" in o for o in outcomes)
            inconclusive = sum("inconclusive" in o and "fail" not in o for o in outcomes)
            report[name] = {"flagged": flagged, "inconclusive": inconclusive, "trials": args.trials,
                            "outcomes": outcomes}
            print(f"{name}: flagged {flagged}/{args.trials}, inconclusive {inconclusive}/{args.trials}", flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
