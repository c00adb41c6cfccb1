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
BACKENDS = "torch,onnxruntime,openvino"  # issue 21's plan
INJECT_ENV = "LEVIT_BENCH_STUDY_SLOWDOWN"  # MODEL/BACKEND:FRACTION, read by the child process only
#: the gate is analysed as ``compare --fail-above 5`` and as ``compare --fail-above 5 --normalize-by plan``
GATE_MODES = {"": None, "_plan": "plan"}


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


# ---------------------------------------------------------------------------------------------
# analysing


#: ``--adjust-by``: which of the adjustments the files carry (``Timing.adjustments``) the analysis
#: keeps (the figures then use the first kept one, as a run would), so that one study's runs show
#: each one's effect side by side; ``wall-canary`` keeps both but the canary's own on-CPU share, as
#: the files were adjusted before the canary was taken while running (``oncpu.canary_seconds``)
ADJUST_BY = {"as-recorded": ("on_cpu", "canary", "canary_on_cpu"), "wall-canary": ("on_cpu", "canary"),
             "canary": ("canary", "canary_on_cpu"), "on_cpu": ("on_cpu",), "none": ()}
_KEEP = ADJUST_BY["as-recorded"]


def _ok(path: Path, reference_s: float | None = None) -> dict[tuple, Entry]:
    entries = [e for e in load(path).results if e.ok]
    _readjust(entries, reference_s)
    return {e.key: e for e in entries}


def _reference_s(path: Path) -> float | None:
    """The canary reference a file's adjusted figures are on (its first entry's; None without)."""
    return next((e.timing.canary["reference_s"] for e in load(path).results if e.ok and e.timing.canary), None)


def _readjust(entries: list[Entry], reference_s: float | None = None) -> None:
    """Adjusted figures and intervals recomputed from the raw rounds, on-CPU shares and canary
    figures with this version's method (as the raw interval is), so files measured before a change
    of method are analysed as this version would record them; what ``--adjust-by`` leaves out is
    dropped from the rounds first.  ``reference_s``: the canary reference every run's figures are
    put on (as ``history`` does): a run that found the machine faster than the cached reference
    replaces it (``canary.reference``), and its figures and those of the runs before it are then in
    different units (seen: 1.30 ms, then 1.04 ms within one quiet study)."""
    from levit_bench.canary import Reference
    from levit_bench.oncpu import canary_inputs
    from levit_bench.stats import group_canary

    for e in entries:
        for r in e.timing.rounds or []:
            for name, field in (("on_cpu", "on_cpu"), ("canary", "canary_s"), ("canary_on_cpu", "canary_on_cpu")):
                if name not in _KEEP:
                    r.pop(field, None)
    groups: dict = {}
    for e in entries:
        if e.timing.canary and all(c is not None for c in e.timing.canary_seconds()):
            groups.setdefault(e.group, []).append(e)
        else:
            e.timing.adjust(None, None, 1.0, None)
    for group in groups.values():
        beta, run_s = group_canary([canary_inputs(e.timing.round_samples(), e.timing.rounds) for e in group])
        for e in group:
            c = e.timing.canary
            e.timing.adjust(Reference(c["name"], reference_s or c["reference_s"], c["reference"]), c.get("cost_s"),
                            beta, run_s)


def _adjusted(e: Entry) -> float | None:
    return e.timing.adjusted_images_per_second


def _share(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def _agreement(runs: list[dict], keys: list, figure) -> dict:
    """run/run ratios of one figure over every (entry, run pair): within ±5% and ±10%."""
    ratios = [figure(runs[j][k]) / figure(runs[i][k]) for i, j in itertools.combinations(range(len(runs)), 2)
              for k in keys if figure(runs[i][k]) and figure(runs[j][k])]
    if not ratios:
        return {"pairs": 0}
    return {"min": min(ratios), "max": max(ratios), "median": float(np.median(ratios)), "pairs": len(ratios),
            "within_5pct": _share([abs(r - 1) <= 0.05 for r in ratios]),
            "within_10pct": _share([abs(r - 1) <= 0.10 for r in ratios])}


def _coverage(runs: list[dict], keys: list, interval, figure) -> dict:
    """How often run i's interval holds run j's estimate, over every (entry, ordered run pair)."""
    held = []
    for i, j in itertools.permutations(range(len(runs)), 2):
        for k in keys:
            bounds, value = interval(runs[i][k]), figure(runs[j][k])
            if bounds is not None and value:
                held.append(bounds[0] <= value <= bounds[1])
    return {"share": _share(held), "cases": len(held)}


def _labelled(name: str):
    def interval(e: Entry):
        got = (e.timing.intervals or {}).get(name)
        return None if got is None else got["images_per_second"]
    return interval


def _slowed(record, key, fraction: float):
    """A copy of ``record`` with one entry's calls ``fraction`` slower (its real noise kept): the
    gate's power on real samples, in every pair, without a run per injection."""
    data = record.to_dict()
    for e in data["results"]:
        if Entry.from_dict(e).key == key:
            e["timing"]["samples_s"] = [x / (1 - fraction) for x in e["timing"]["samples_s"]]
    return data


def _gate_outcomes(base: Path, new: Path, inject: tuple | None = None, normalize_by: str | None = None) -> dict:
    """``compare --fail-above 5 [--normalize-by ...]`` of two files in-process: exit code, outcome
    counts, and (with an injection ``(key, fraction)``) that entry's outcome."""
    import tempfile

    from levit_bench import gate

    base_record, new_record = load(base), load(new)
    if inject is not None:
        tmp = Path(tempfile.mkdtemp()) / new.name
        tmp.write_text(json.dumps(_slowed(new_record, *inject)))
        new_record = load(tmp)
    for record in (base_record, new_record):
        _readjust([e for e in record.results if e.ok])
    result = gate.compare_runs(base_record, new_record, normalize_by, fail_above_pct=5.0)
    rows = [r for r in result.rows if r.gated]
    out = {"base": base.name, "new": new.name, "exit": 1 if result.failed() else 0,
           "outcomes": {o: sum(r.outcome == o for r in rows) for o in ("pass", "fail", "inconclusive")},
           "adjusted": sum(r.adjusted for r in rows), "entries": len(rows),
           "failed": [f"{r.base.label()} {r.change_pct:+.1f}%" for r in rows if r.outcome == "fail"]}
    if inject is not None:
        row = next(r for r in rows if r.key == inject[0])
        out["injected"] = {"entry": row.base.label(), "fraction": inject[1], "outcome": row.outcome,
                           "change_pct": row.change_pct}
    return out


def analyse(clean: list[Path], injected: Path | None, inject: str | None) -> dict:
    runs = [_ok(p, _reference_s(clean[0])) for p in clean]
    keys = sorted(set.intersection(*(set(r) for r in runs)), key=str)
    report: dict = {"files": [str(p) for p in clean], "entries": len(keys)}
    raw = lambda e: e.timing.images_per_second  # noqa: E731
    report["run_over_run"] = {"raw": _agreement(runs, keys, raw), "adjusted": _agreement(runs, keys, _adjusted)}
    have_adjusted = any(_adjusted(r[k]) for r in runs for k in keys)
    figure = _adjusted if have_adjusted else raw
    report["coverage"] = {
        "raw_interval_raw_estimate": _coverage(runs, keys, lambda e: e.timing.interval(), raw),
        "confidence": _coverage(runs, keys, _labelled("confidence"), figure),
        "rerun": _coverage(runs, keys, _labelled("rerun"), figure),
        "of": "adjusted_images_per_second" if have_adjusted else "images_per_second"}
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
    report["run_factor"] = {name: _run_factors(runs, keys, f) for name, f in (("raw", raw), ("adjusted", figure))}
    costs = [e.timing.canary.get("cost_share") for r in runs for e in r.values()
             if e.timing.canary and e.timing.canary.get("cost_share")]
    report["canary_cost_share"] = {"median": float(np.median(costs)), "max": max(costs)} if costs else None
    pairs = list(itertools.permutations(clean, 2))
    for suffix, normalize_by in GATE_MODES.items():
        report["gate_clean" + suffix] = [_gate_outcomes(a, b, None, normalize_by) for a, b in pairs]
        rng = np.random.default_rng(0)  # the same injected entries in both modes
        for fraction in (0.20, 0.10):
            report[f"gate_synthetic_{int(fraction * 100)}{suffix}"] = [
                _gate_outcomes(a, b, (keys[int(rng.integers(len(keys)))], fraction), normalize_by) for a, b in pairs]
        if injected is not None and injected.exists():
            report["gate_injected" + suffix] = [_gate_outcomes(a, injected, None, normalize_by) for a in clean]
            report["injected"] = inject
    return report



def _run_factors(runs: list[dict], keys: list, figure) -> dict:
    """Each run's machine-wide factor that ``figure`` keeps: the median over the entries of their log
    figure relative to the entry's mean over the runs, centred; and their SD (``pair_noise.RUN_FACTOR_SD``
    pools it over studies)."""
    keys = [k for k in keys if all(figure(r[k]) for r in runs)]
    if not keys or len(runs) < 2:
        return {}
    logs = np.log([[figure(r[k]) for k in keys] for r in runs])
    factors = np.median(logs - logs.mean(axis=0), axis=1)
    factors -= factors.mean()
    return {"factors": [float(f) for f in factors], "sd": float(np.sqrt((factors**2).sum() / (len(runs) - 1)))}


def _fmt(d: dict) -> str:
    if not d.get("pairs"):
        return "none"
    return (f"{d['min']:.3f} … {d['max']:.3f} (median {d['median']:.3f}); within ±5%: {d['within_5pct']:.0%}, "
            f"±10%: {d['within_10pct']:.0%} of {d['pairs']} (entry, run pair)")


def print_report(r: dict) -> None:
    print(f"\n{r['entries']} entries in every run ({', '.join(Path(f).name for f in r['files'])})")
    print(f"run/run raw images/s:      {_fmt(r['run_over_run']['raw'])}")
    print(f"run/run adjusted images/s: {_fmt(r['run_over_run']['adjusted'])}")
    cov = r["coverage"]
    for name, label in (("raw_interval_raw_estimate", "raw 95% interval holds another run's raw estimate"),
                        ("confidence", f"95% confidence interval holds another run's {cov['of']}"),
                        ("rerun", f"95% rerun interval holds another run's {cov['of']}")):
        c = cov[name]
        share = "n/a" if c["share"] is None else f"{c['share']:.0%}"
        print(f"{label}: {share} of {c['cases']} (entry, ordered pair)")
    print("LeViT / EfficientNet across runs (spread = max/min):")
    for name, v in r["levit_over_efficientnet"].items():
        print(f"  {name:45} {' '.join(f'{x:.3f}' for x in v['ratios'])}  spread {v['spread']:.3f}×")
    worst = max((v["spread"] for v in r["levit_over_efficientnet"].values()), default=float("nan"))
    print(f"  largest spread: {worst:.3f}×")
    if r.get("run_factor", {}).get("raw"):
        print("each run's common factor (log; SD over runs): " + "; ".join(
            f"{name} {' '.join(f'{x:+.3f}' for x in v['factors'])} (SD {v['sd']:.3f})"
            for name, v in r["run_factor"].items() if v))
    if r.get("canary_cost_share"):
        print(f"canary cost: median {r['canary_cost_share']['median']:.1%} of an entry's timed seconds "
              f"(max {r['canary_cost_share']['max']:.1%})")
    for suffix, normalize_by in GATE_MODES.items():
        if "gate_clean" + suffix not in r:  # an analysis saved before this mode
            continue
        flags_text = "--fail-above 5" + (f" --normalize-by {normalize_by}" if normalize_by else "")
        clean = r["gate_clean" + suffix]
        flags = sum(g["outcomes"]["fail"] for g in clean)
        entries = sum(g["entries"] for g in clean)
        print(f"gate, clean ordered pairs ({flags_text}): exits {[g['exit'] for g in clean]}; false flags "
              f"{flags} of {entries} entries ({flags / max(entries, 1):.1%}); inconclusive "
              f"{sum(g['outcomes']['inconclusive'] for g in clean)}; adjusted {sum(g['adjusted'] for g in clean)}")
        for g in clean:
            if g["failed"]:
                print(f"  {g['base']}→{g['new']}: {', '.join(g['failed'])}")
        for pct in (20, 10):
            got = [g["injected"]["outcome"] for g in r.get(f"gate_synthetic_{pct}{suffix}", [])]
            print(f"gate ({flags_text}), {pct}% slowdown injected into one entry of the new file, each ordered "
                  f"pair: {', '.join(got)}")
        for g in r.get("gate_injected" + suffix, []):
            print(f"gate ({flags_text}), {g['base']} → injected run ({r['injected']}): exit {g['exit']}; "
                  f"outcomes {g['outcomes']}; flagged {g['failed']}")


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
    global _KEEP
    _KEEP = ADJUST_BY[args.adjust_by]
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
