"""Which canary tracks the plan's entries best?  (issue 21, item 2; figures in docs/measurement.md)

Prepares a few plan entries as a run does (``prepare.outcomes``: levit_128s, levit_256,
efficientnet_b0 × torch, onnxruntime; 1 thread, batch 16), then times them in interleaved rounds
through ``schedule.run_rounds`` with a canary that measures *every* candidate (in a fresh random
order) before and after each block.  For each candidate it prints:

* ``corr``: the correlation of log block medians with the log canary index next to them, after
  removing each entry's mean (how much of the block-to-block drift the canary sees);
* ``sd raw`` / ``sd adj``: the round-to-round SD of log block medians, raw and divided by the
  canary (a canary that adds its own noise makes it larger);
* ``agree``: with ``--repeats 2`` (two sets of rounds back to back in this process), the share of
  entries whose adjusted estimates of the two sets agree within ±5% (raw in the last line);
* ``cost``: the candidate's before+after seconds over the timed seconds (each alone would cost this).

    PYTHONPATH=$PWD python benchmarks/canary_choice.py --rounds 12 --repeats 2

The machine's state is whatever it is: say which (quiet, shared by other jobs, a noisy neighbour).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from levit_bench import canary as canaries  # noqa: E402
from levit_bench.backends import ExportCache  # noqa: E402
from levit_bench.harness import TimingOptions  # noqa: E402
from levit_bench.prepare import Ready, outcomes  # noqa: E402
from levit_bench.runstate import run_state  # noqa: E402
from levit_bench.schedule import Schedule, Timed, run_rounds, warm  # noqa: E402
from levit_bench.selection import Selection  # noqa: E402
from levit_bench.spec import Settings  # noqa: E402


class AllCanaries(canaries.Canary):
    """Measures every candidate each time (their order shuffled); keeps each value in ``log``."""

    def __init__(self, built: dict[str, canaries.Canary], seed: int) -> None:
        super().__init__("all", lambda: None)
        self.built, self.log, self.rng = built, [], np.random.default_rng(seed)

    def measure(self) -> float:
        names = list(self.built)
        values = {}
        for k in self.rng.permutation(len(names)):
            c = self.built[names[int(k)]]
            values[c.name] = c.measure()
        self.log.append(values)
        return values[canaries.DEFAULT_CANARY]


def blocks(items: list[Timed], log: list[dict[str, float]]) -> dict[str, list[tuple[float, dict[str, float]]]]:
    """Per entry: (log block median, {candidate: log canary index}) in time order.  The canary log
    holds one value per item of the warm-up round, then a before and an after per block."""
    visits = sorted(((r.start_s, it, i) for it in items for i, r in enumerate(it.rounds)), key=lambda v: v[0])
    offset = len(items)
    out: dict[str, list] = {it.label: [] for it in items}
    for n, (_start, it, i) in enumerate(visits):
        before, after = log[offset + 2 * n], log[offset + 2 * n + 1]
        med = float(np.median(it.round_samples()[i]))
        out[it.label].append((np.log(med), {c: 0.5 * (np.log(before[c]) + np.log(after[c])) for c in before}))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=1, help="sets of rounds back to back (2: run/run agreement)")
    ap.add_argument("--models", default="levit_128s,levit_256,efficientnet_b0")
    ap.add_argument("--backends", default="torch,onnxruntime")
    ap.add_argument("--min-time", type=float, default=2.0, help="timed seconds per entry per set (run default: 2)")
    ap.add_argument("--target", type=float, default=canaries.TARGET_S, help="seconds of one canary measurement")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    selection = Selection(tuple(args.models.split(",")), tuple(args.backends.split(",")), (16,), ("fp32",),
                          Settings(threads=1), cache_dir=args.cache_dir)
    timing = TimingOptions(min_time_s=args.min_time)
    cache = ExportCache(args.cache_dir)
    with run_state(1, cache.runtime_dir("inductor")), torch.inference_mode():
        ready = []
        for _subject, outcome in outcomes(selection, cache, "cpu"):
            if isinstance(outcome, Ready):
                t = Timed(f"{outcome.identity.model}/{outcome.identity.backend}", outcome.runner.bind(outcome.x),
                          outcome.runner.synchronize, False)
                warm(t, timing, outcome.first_call_s)
                ready.append((outcome.runner, t))
            else:
                print(f"not ready: {outcome.identity.model}/{outcome.identity.backend}: {outcome.reason}")
        built = {name: canaries.build(name, args.target) for name in canaries.CANARIES}
        sets = []
        for rep in range(args.repeats):
            items = [Timed(t.label, t.call, t.synchronize, False, warm=t.warm) for _r, t in ready]
            probe = AllCanaries(built, rep)
            spent = {n: c.cost_s for n, c in built.items()}
            run_rounds(items, timing, Schedule(args.rounds, rep), canary=probe)
            timed = sum(sum(it.samples) for it in items)
            cost = {n: (c.cost_s - spent[n]) / timed for n, c in built.items()}
            sets.append((blocks(items, probe.log), cost))
        for runner, _t in ready:
            runner.close()
    report(sets, list(built))
    return 0


def report(sets: list, names: list[str]) -> None:
    print(f"{'canary':8} {'corr':>6} {'sd raw':>7} {'sd adj':>7} {'agree±5%':>9} {'cost':>6}")
    for name in names + ["(raw)"]:
        corr, sd_raw, sd_adj, costs = [], [], [], []
        estimates = []  # per set: {entry: adjusted log estimate}
        for per_entry, cost in sets:
            costs.append(cost.get(name, 0.0))
            est = {}
            x_all, y_all = [], []
            for label, bl in per_entry.items():
                t = np.array([b[0] for b in bl])
                c = np.array([b[1][name] for b in bl]) if name in names else np.zeros_like(t)
                x_all += list(t - t.mean())
                y_all += list(c - c.mean())
                sd_raw.append(t.std(ddof=1))
                sd_adj.append((t - c).std(ddof=1))
                est[label] = float(np.median(t - c))
            if name in names:
                corr.append(float(np.corrcoef(x_all, y_all)[0, 1]))
            estimates.append(est)
        agree = ""
        if len(estimates) >= 2:
            a, b = estimates[0], estimates[1]
            agree = f"{np.mean([abs(a[k] - b[k]) < np.log(1.05) for k in a]):.0%}"
        print(f"{name:8} {np.mean(corr) if corr else float('nan'):6.2f} {np.mean(sd_raw):7.3f} "
              f"{np.mean(sd_adj):7.3f} {agree:>9} {np.mean(costs):6.1%}")


if __name__ == "__main__":
    raise SystemExit(main())
