"""Do levit-bench's figures survive a rerun?  Runs one plan K times back to back (a fresh process
each) and one more time with a 10% slowdown injected into one entry, then prints:

* run/run ratio of every entry's images/s, raw and canary-adjusted, for every pair of clean runs
  (shares within ±5% and ±10%);
* each LeViT / EfficientNet ratio (the paper's three pairs x every backend) across the clean runs
  (its spread, max/min);
* how often a run's intervals hold another run's estimate (every entry, ordered pair): the raw
  interval, the labelled 95% confidence interval and the 95% rerun interval (issue 21);
* each run's common (machine-wide) factor, raw and adjusted, and its SD over the runs (what
  ``pair_noise.RUN_FACTOR_SD`` pools over studies);
* what the canary cost;
* the gate (``compare --fail-above 5``, in-process): every ordered pair of clean runs (should exit 0,
  false flags at most 2% of entries), the same pairs with a 20% and a 10% slowdown injected into one
  entry of the new file (its real samples scaled: 20% should fail, 10% fail or be inconclusive), and
  every clean run against the run with a real 10% slowdown injected into one entry.

    python benchmarks/rerun_study.py --runs 3 --out docs/perf/rerun-study        # measure, then analyse
    python benchmarks/rerun_study.py --analyse A.json B.json C.json                # analyse existing files
    python benchmarks/rerun_study.py --neighbour ci-like --neighbour-seed 1 --out docs/perf/rerun-ci-like

``--neighbour LEVEL`` runs every child under ``benchmarks/noisy_neighbour.py``'s neighbour, run ``k``
seeded ``derive_seed(--neighbour-seed, k)`` (each run its own per-run offset, reproducibly).

The plan defaults to issue 21's (6 models x 3 CPU backends, 1 thread, batch 16, the default timed
seconds); any extra arguments after ``--`` go to ``levit-bench``.  Method and results:
docs/measurement.md.  The analysis is ``benchmarks/rerun_analysis.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from noisy_neighbour import LEVELS, derive_seed  # noqa: E402
from rerun_analysis import ADJUST_BY, analyse, print_report, set_adjust_by  # noqa: E402

MODELS = "levit_128s,levit_192,levit_256,efficientnet_b0,efficientnet_b2,efficientnet_b3"
BACKENDS = "torch,onnxruntime,openvino"  # issue 21's plan
INJECT_ENV = "LEVIT_BENCH_STUDY_SLOWDOWN"  # MODEL/BACKEND:FRACTION, read by the child process only


# ---------------------------------------------------------------------------------------------
# the child: levit-bench, with one entry made slower by doing more work per call


def child(argv: list[str]) -> int:
    spec = os.environ.get(INJECT_ENV)
    if spec:
        _inject(spec)
    from levit_bench.cli import main

    return main(argv)


def _inject(spec: str) -> None:
    """Wrap one backend so that one model's bound call busy-waits ``fraction`` of its own duration
    after each call: the runner does that much more work per call."""
    from levit_bench.backends import BACKENDS as REGISTRY

    target, fraction_text = spec.rsplit(":", 1)
    model, backend_name = target.split("/")
    fraction = float(fraction_text)
    backend = REGISTRY[backend_name]
    original = backend.prepare

    def prepare(m, model_id, example, settings, cache):
        prepared = original(m, model_id, example, settings, cache)
        if model_id.name == model:
            runner, bind = prepared.runner, prepared.runner.bind

            def slower_bind(x):
                call = bind(x)

                def slower():
                    start = time.perf_counter()
                    out = call()
                    until = time.perf_counter() + fraction * (time.perf_counter() - start)
                    while time.perf_counter() < until:
                        pass
                    return out

                return slower

            runner.bind = slower_bind
            prepared.notes.append(f"study: {fraction:.0%} slowdown injected")
        return prepared

    backend.prepare = prepare


# ---------------------------------------------------------------------------------------------
# measuring


def _run_child(cmd: list[str], env: dict, level: str | None, seed: int) -> None:
    """One child run, under the noisy neighbour when a level is given (in its own process group,
    which the neighbour stops and continues; it is terminated when this study is interrupted)."""
    if level is None:
        subprocess.run(cmd, check=True, env=env)
        return
    from noisy_neighbour import neighbour

    def interrupted(sig, _frame):  # SIGTERM too: the with-block continues the child before we go
        raise KeyboardInterrupt(signal.Signals(sig).name)

    previous = signal.signal(signal.SIGTERM, interrupted)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        with neighbour(level, seed, proc.pid, log=lambda m: print(m, file=sys.stderr)):
            code = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code:
        raise subprocess.CalledProcessError(code, cmd)


def measure(out: Path, runs: int, inject: str, extra: list[str], level: str | None = None,
            base_seed: int = 0, models: str = MODELS, backends: str = BACKENDS) -> tuple[list[Path], Path]:
    out.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, __file__, "--child", "--model", models, "--backend", backends, "--threads", "1",
            "--batch-size", "16", "--quiet", "--force", *extra]
    clean = []
    for k in range(1, runs + (1 if inject == "none" else 2)):
        injected = k == runs + 1
        path = out / ("injected.json" if injected else f"run{k}.json")
        env = {k: v for k, v in os.environ.items() if k != INJECT_ENV}
        if injected:
            env[INJECT_ENV] = inject
        start = time.perf_counter()
        seed = derive_seed(base_seed, k)
        _run_child([*base, "--out", str(path)], env, level, seed)
        noise = f" (neighbour {level}, seed {seed})" if level else ""
        print(f"{path.name}: {time.perf_counter() - start:.0f} s{noise}", flush=True)
        if not injected:
            clean.append(path)
    return clean, out / "injected.json"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default="docs/perf/rerun-study", help="folder for the results files and study.json")
    p.add_argument("--inject", default="efficientnet_b0/onnxruntime:0.10",
                   help="MODEL/BACKEND:FRACTION for the extra run with a real slowdown, or none (no such run)")
    p.add_argument("--models", default=MODELS, help="the plan's models (comma list)")
    p.add_argument("--backends", default=BACKENDS, help="the plan's backends (comma list)")
    p.add_argument("--neighbour", choices=list(LEVELS), default=None,
                   help="run every child under benchmarks/noisy_neighbour.py at this level")
    p.add_argument("--neighbour-seed", type=int, default=0, help="--neighbour: base seed (run k: derived from it)")
    p.add_argument("--analyse", nargs="+", default=None, help="analyse these results files instead of measuring")
    p.add_argument("--adjust-by", choices=list(ADJUST_BY), default="as-recorded",
                   help="the adjustments the analysis keeps of those the files carry (default: all, as a run uses them)")
    p.add_argument("extra", nargs="*", help="after --: more levit-bench options (e.g. --rounds 10)")
    args = p.parse_args()
    set_adjust_by(args.adjust_by)
    if args.analyse:
        report = analyse([Path(f) for f in args.analyse], None, None)
    else:
        clean, injected = measure(Path(args.out), args.runs, args.inject, args.extra, args.neighbour,
                                  args.neighbour_seed, args.models, args.backends)
        report = analyse(clean, injected, args.inject)
        if args.neighbour:
            report["neighbour"] = {"level": args.neighbour, "base_seed": args.neighbour_seed,
                                   "seeds": [derive_seed(args.neighbour_seed, k) for k in range(1, args.runs + 2)]}
        (Path(args.out) / "study.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
