"""The rerun study's analysis (``benchmarks/rerun_study.py`` measures): from three or more clean
results files of one plan, run/run agreement raw and adjusted, the LeViT/EfficientNet spread, how
often each interval holds another run's estimate, each run's common factor, the canary's cost and
the gate on every ordered pair (with 20% and 10% slowdowns scaled into one entry's real samples).
Every file is re-adjusted with this version's method first, keeping only the adjustments
:func:`set_adjust_by` names, so one study's files show each adjustment's effect side by side.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from levit_bench import paper  # noqa: E402
from levit_bench.present import speed_ratio  # noqa: E402
from levit_bench.results import Entry, load  # noqa: E402

#: the gate is analysed as ``compare --fail-above 5`` and as ``compare --fail-above 5 --normalize-by plan``
GATE_MODES = {"": None, "_plan": "plan"}


#: ``--adjust-by``: which of the adjustments the files carry (``Timing.adjustments``) the analysis
#: keeps (the figures then use the first kept one, as a run would), so that one study's runs show
#: each one's effect side by side; ``wall-canary`` keeps both but the canary's own on-CPU share, as
#: the files were adjusted before the canary was taken while running (``oncpu.canary_seconds``)
ADJUST_BY = {"as-recorded": ("on_cpu", "canary", "canary_on_cpu"), "wall-canary": ("on_cpu", "canary"),
             "canary": ("canary", "canary_on_cpu"), "on_cpu": ("on_cpu",), "none": ()}
_KEEP = ADJUST_BY["as-recorded"]


def set_adjust_by(name: str) -> None:
    """Which of :data:`ADJUST_BY` the analyses that follow keep."""
    global _KEEP
    _KEEP = ADJUST_BY[name]


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
