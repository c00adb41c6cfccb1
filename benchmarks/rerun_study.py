"""Do levit-bench's figures survive a rerun?  Runs one plan K times back to back (a fresh process
each) and one more time with a 10% slowdown injected into one entry, then prints:

* run/run ratio of every entry's images/s, for every pair of clean runs (share within ±5%);
* each LeViT / EfficientNet ratio (the paper's three pairs x every backend) across the clean runs
  (its spread, max/min);
* how often a run's 95% interval contains another run's estimate (every entry, ordered pair);
* the gate: ``levit-bench compare`` of every pair of clean runs with ``--fail-above 5`` (should pass),
  and of every clean run against the injected one (should fail, flagging that entry).

    python benchmarks/rerun_study.py --runs 3 --out docs/perf/rerun-study        # measure, then analyse
    python benchmarks/rerun_study.py --analyse A.json B.json C.json                # analyse existing files
    python benchmarks/rerun_study.py --neighbour ci-like --neighbour-seed 1 --out docs/perf/rerun-ci-like

``--neighbour LEVEL`` runs every child under ``benchmarks/noisy_neighbour.py``'s neighbour, run ``k``
seeded ``derive_seed(--neighbour-seed, k)`` (each run its own per-run offset, reproducibly).

The plan defaults to issue 12's (6 models x 4 CPU backends, 1 thread, batch 16, the default timed
seconds); any extra arguments after ``--`` go to ``levit-bench``.  Method and results:
docs/measurement.md.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from levit_bench import paper  # noqa: E402
from levit_bench.present import speed_ratio  # noqa: E402
from levit_bench.results import Entry, load  # noqa: E402
from noisy_neighbour import LEVELS, derive_seed  # noqa: E402

MODELS = "levit_128s,levit_192,levit_256,efficientnet_b0,efficientnet_b2,efficientnet_b3"
BACKENDS = "torch,torchscript,onnxruntime,openvino"
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
    for k in range(1, runs + 2):
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


# ---------------------------------------------------------------------------------------------
# analysing


def _ok(path: Path) -> dict[tuple, Entry]:
    return {e.key: e for e in load(path).results if e.ok}


def analyse(clean: list[Path], injected: Path | None, inject: str | None) -> dict:
    runs = [_ok(p) for p in clean]
    keys = sorted(set.intersection(*(set(r) for r in runs)), key=str)
    report: dict = {"files": [str(p) for p in clean], "entries": len(keys)}

    ratios = [runs[j][k].images_per_second / runs[i][k].images_per_second
              for i, j in itertools.combinations(range(len(runs)), 2) for k in keys]
    within = np.mean([abs(r - 1) <= 0.05 for r in ratios])
    report["run_over_run"] = {"min": min(ratios), "max": max(ratios), "median": float(np.median(ratios)),
                              "within_5pct": float(within), "pairs": len(ratios)}

    intervals = [{k: r[k].interval() for k in keys} for r in runs]  # recomputed: this version's method
    contained = [intervals[i][k][0] <= runs[j][k].images_per_second <= intervals[i][k][1]
                 for i, j in itertools.permutations(range(len(runs)), 2) for k in keys]
    report["ci_contains_other_run"] = {"share": float(np.mean(contained)), "cases": len(contained)}

    spreads = {}
    for levit, effnet in paper.HEADLINE_PAIRS:
        for k in keys:
            if k.model != levit:
                continue
            other = k._replace(model=effnet)
            if other not in keys:
                continue
            values = [speed_ratio(r[k], r[other], same_run=True).value for r in runs]
            spreads[f"{levit}/{effnet} {k.variant}"] = {"ratios": values, "spread": max(values) / min(values)}
    report["levit_over_efficientnet"] = spreads
    report["gate_clean"] = [_gate(a, b) for a, b in itertools.permutations(clean, 2)]
    if injected is not None:
        report["gate_injected"] = [_gate(a, injected) for a in clean]
        report["injected"] = inject
    return report


def _gate(base: Path, new: Path) -> dict:
    cmd = [sys.executable, "-m", "levit_bench.cli", "compare", str(base), str(new), "--fail-above", "5", "--markdown"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    flagged = [line for line in done.stdout.splitlines() if "| slower |" in line]
    return {"base": base.name, "new": new.name, "exit": done.returncode, "slower_rows": flagged,
            "summary": next((line for line in done.stdout.splitlines() if "gate --fail-above" in line), "")}


def print_report(r: dict) -> None:
    rr, ci = r["run_over_run"], r["ci_contains_other_run"]
    print(f"\n{r['entries']} entries in every run ({', '.join(Path(f).name for f in r['files'])})")
    print(f"run/run images/s ratio: {rr['min']:.3f} … {rr['max']:.3f} (median {rr['median']:.3f}); "
          f"within ±5%: {rr['within_5pct']:.0%} of {rr['pairs']} (entry, run pair)")
    print(f"a run's 95% CI (as this version computes it from the raw samples) contains another run's estimate: "
          f"{ci['share']:.0%} of {ci['cases']} (entry, ordered pair)")
    print("LeViT / EfficientNet across runs (spread = max/min):")
    for name, v in r["levit_over_efficientnet"].items():
        print(f"  {name:45} {' '.join(f'{x:.3f}' for x in v['ratios'])}  spread {v['spread']:.3f}×")
    worst = max((v["spread"] for v in r["levit_over_efficientnet"].values()), default=float("nan"))
    print(f"  largest spread: {worst:.3f}×")
    print("gate, clean pairs (--fail-above 5): " + ", ".join(f"{g['base']}→{g['new']} exit {g['exit']}"
                                                              for g in r["gate_clean"]))
    for g in r["gate_clean"]:
        if g["exit"]:
            print(f"  {g['base']}→{g['new']}: {g['summary']}")
    for g in r.get("gate_injected", []):
        print(f"gate, {g['base']} → injected ({r['injected']}): exit {g['exit']}; {g['summary']}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default="docs/perf/rerun-study", help="folder for the results files and study.json")
    p.add_argument("--inject", default="efficientnet_b0/onnxruntime:0.10", help="MODEL/BACKEND:FRACTION")
    p.add_argument("--models", default=MODELS, help="the plan's models (comma list)")
    p.add_argument("--backends", default=BACKENDS, help="the plan's backends (comma list)")
    p.add_argument("--neighbour", choices=list(LEVELS), default=None,
                   help="run every child under benchmarks/noisy_neighbour.py at this level")
    p.add_argument("--neighbour-seed", type=int, default=0, help="--neighbour: base seed (run k: derived from it)")
    p.add_argument("--analyse", nargs="+", default=None, help="analyse these results files instead of measuring")
    p.add_argument("extra", nargs="*", help="after --: more levit-bench options (e.g. --rounds 10)")
    args = p.parse_args()
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
