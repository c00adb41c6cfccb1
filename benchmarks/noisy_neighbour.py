"""A reproducible noisy neighbour (issue 21, item 1): the interference of a shared CI runner, made on
purpose and seeded, so that every trust figure of levit-bench can be measured under known noise.

Two sources of noise, both following seeded random walks:

* **a machine-wide slowdown of the measured process tree**: its process group is stopped
  (SIGSTOP) for a fraction of every ``period`` and continued (SIGCONT) for the rest, as ``cpulimit``
  does.  The slowdown ``s = -log(1 - stopped fraction)`` (a call takes ``e^s`` times longer) is a
  per-run offset drawn from the seed (the rerun study's ~12% between-run machine factor) plus an
  Ornstein–Uhlenbeck walk with a few seconds' correlation time (residuals of entries timed close
  together correlate, far apart they do not);
* **a competing process** pinned to the last core (the measured tree gets the others), streaming
  over a buffer four times the last-level cache for a varying share of every period: it costs
  memory-bound work (depthwise convolutions) more than GEMMs, so not all of the noise is common-mode.

    python benchmarks/noisy_neighbour.py --level ci-like --seed 3 -- levit-bench run ...
    python benchmarks/noisy_neighbour.py --calibrate          # what each level does to a fixed workload

From Python (``benchmarks/rerun_study.py``): ``with neighbour("ci-like", seed=1, target_pid=p.pid): p.wait()``.

It always stops by itself: when CMD exits, when interrupted (SIGINT/SIGTERM: the target is
continued, the competitor killed, the signal passed on to CMD) and after ``--duration``; a target is
never left stopped (SIGKILL of the neighbour itself excepted: nothing can catch it).  It touches
only processes it started or was given.  Stdlib, numpy and psutil only.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Level:
    """How much noise: the slowdown walk (in log time per call) and the competitor's busy share."""

    name: str
    mean_s: float = 0.0  # mean log slowdown (0.35: calls take 1.42× as long)
    offset_sd: float = 0.0  # SD of the per-run offset of the log slowdown (between-run factor)
    walk_sd: float = 0.0  # stationary SD of the within-run walk of the log slowdown
    tau_s: float = 4.0  # the walk's correlation time (seconds)
    period_s: float = 0.05  # one stop/continue cycle
    competitor: float = 0.0  # mean busy share of the competitor's periods (0: none)
    competitor_sd: float = 0.0  # stationary SD of that share's walk
    competitor_tau_s: float = 6.0

    @property
    def duty_cycles(self) -> bool:
        return self.mean_s > 0 or self.offset_sd > 0 or self.walk_sd > 0


#: "ci-like" is calibrated to the rerun study (docs/measurement.md, "The noisy neighbour")
LEVELS = {
    "quiet": Level("quiet"),
    "ci-like": Level("ci-like", mean_s=0.35, offset_sd=0.12, walk_sd=0.09, tau_s=4.0,
                     competitor=0.5, competitor_sd=0.3, competitor_tau_s=6.0),
}
MAX_STOP = 0.9  # never stop the target for more than 90% of a period


def level(name: str | Level) -> Level:
    if isinstance(name, Level):
        return name
    if name not in LEVELS:
        raise SystemExit(f"noisy_neighbour: unknown level {name!r} (choose from {', '.join(LEVELS)})")
    return LEVELS[name]


def derive_seed(base: int, k: int) -> int:
    """The seed of run ``k`` of a study seeded ``base``: independent streams, reproducible."""
    return int(np.random.SeedSequence([base, k]).generate_state(1)[0])


def _ou(rng: np.random.Generator, n: int, dt: float, tau: float, sd: float) -> np.ndarray:
    """A stationary Ornstein–Uhlenbeck walk sampled every ``dt``: autocorrelation exp(-lag/tau)."""
    a = math.exp(-dt / tau)
    prev = rng.standard_normal() * sd  # drawn first: a longer trace starts with the shorter one
    noise = rng.standard_normal(n) * sd * math.sqrt(1 - a * a)
    x = np.empty(n)
    for i in range(n):
        prev = a * prev + noise[i]
        x[i] = prev
    return x


def slowdown_trace(lvl: str | Level, seed: int, duration_s: float) -> np.ndarray:
    """The log slowdown of every period of the first ``duration_s`` seconds (what the duty cycle
    applies, generated without applying it: the same seed gives the same trace)."""
    lvl = level(lvl)
    n = max(1, math.ceil(duration_s / lvl.period_s))
    if not lvl.duty_cycles:
        return np.zeros(n)
    rng = np.random.default_rng([seed, 1])
    offset = rng.standard_normal() * lvl.offset_sd
    s = lvl.mean_s + offset + _ou(rng, n, lvl.period_s, lvl.tau_s, lvl.walk_sd)
    return np.clip(s, 0.0, -math.log(1 - MAX_STOP))


def stop_fractions(lvl: str | Level, seed: int, duration_s: float) -> np.ndarray:
    """The share of each period the target is stopped: 1 - e^-s."""
    return 1.0 - np.exp(-slowdown_trace(lvl, seed, duration_s))


def competitor_trace(lvl: str | Level, seed: int, duration_s: float) -> np.ndarray:
    """The competitor's busy share of every period (its own seeded walk, independent of the slowdown)."""
    lvl = level(lvl)
    n = max(1, math.ceil(duration_s / lvl.period_s))
    if lvl.competitor <= 0:
        return np.zeros(n)
    rng = np.random.default_rng([seed, 2])
    return np.clip(lvl.competitor + _ou(rng, n, lvl.period_s, lvl.competitor_tau_s, lvl.competitor_sd), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# the competitor: a child process streaming over a buffer larger than the last-level cache


def _llc_bytes() -> int:
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip()
        mult = {"K": 1024, "M": 1024**2}.get(text[-1:], 1)
        with contextlib.suppress(ValueError):
            sizes.append(int(text.rstrip("KM")) * mult)
    return max(sizes, default=32 * 1024**2)


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL when the parent goes, however it goes."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _compete(level_name: str, seed: int, duration_s: float, parent: int, cpu: int) -> int:
    _die_with_parent()
    os.sched_setaffinity(0, {cpu})  # before any memory traffic: only the other core sees it
    lvl = level(level_name)
    share = competitor_trace(lvl, seed, duration_s)
    buf = np.zeros(4 * _llc_bytes() // 8)
    chunk = 1 << 17  # 1 MiB of float64
    start, pos = time.perf_counter(), 0
    for k, busy in enumerate(share):
        if os.getppid() != parent:
            return 0
        t0 = start + k * lvl.period_s
        until = t0 + busy * lvl.period_s
        while time.perf_counter() < until:  # read-modify-write a streaming chunk: memory traffic
            view = buf[pos:pos + chunk]
            np.add(view, 1.0, out=view)
            pos = (pos + chunk) % buf.size
        rest = t0 + lvl.period_s - time.perf_counter()
        if rest > 0:
            time.sleep(rest)
    return 0


def _start_competitor(lvl: Level, seed: int, duration_s: float, cpu: int) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_compete", lvl.name, str(seed), str(duration_s),
           str(os.getpid()), str(cpu)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# the duty cycle


def _signal_target(pid: int, sig: int) -> None:
    """``sig`` to the target's process group when it has its own, else to it and its children."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, sig)
            return
        import psutil

        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)


def _pin_tree(pid: int, cpus: set[int]) -> None:
    """Every thread of the target (and of its children) onto ``cpus``; new ones inherit it."""
    import psutil

    with contextlib.suppress(psutil.Error):
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for p in procs:
            for t in p.threads():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(t.id, cpus)


class Neighbour:
    """The running neighbour: a duty-cycle thread over ``target_pid`` and a competitor process."""

    def __init__(self, lvl: str | Level, seed: int, target_pid: int | None, duration_s: float = 3600.0,
                 pin: bool = True, log=None):
        if target_pid == os.getpid():  # stopping ourselves would stop the duty cycle too, for good
            raise ValueError("noisy_neighbour: the target must be another process")
        self.level = level(lvl)
        self.seed, self.target, self.duration = seed, target_pid, duration_s
        self.pin, self.log = pin, log or (lambda msg: None)
        self.competitor: subprocess.Popen | None = None
        self.stopped_s = 0.0  # seconds the target spent stopped (as sent: SIGSTOP to SIGCONT)
        self.cycled_s = 0.0  # seconds the duty cycle ran
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Neighbour:
        cpus = sorted(os.sched_getaffinity(0))
        if self.level.competitor > 0:
            if len(cpus) < 2:
                self.log(f"noisy_neighbour: only 1 core ({cpus[0]}): no competing process, the duty cycle only")
            else:
                self.competitor = _start_competitor(self.level, self.seed, self.duration, cpus[-1])
                if self.target is not None and self.pin:
                    _pin_tree(self.target, set(cpus[:-1]))
                self.log(f"noisy_neighbour: competitor pid {self.competitor.pid} on cpu {cpus[-1]}")
        if self.target is not None and self.level.duty_cycles:
            self._thread = threading.Thread(target=self._cycle, name="noisy-neighbour", daemon=True)
            self._thread.start()
        return self

    def _cycle(self) -> None:
        """Stop the target for each period's share of the trace.  A loaded machine wakes this thread
        late, so each stop is cut by what earlier ones overran: the stopped share stays the trace's."""
        period = self.level.period_s
        fractions = stop_fractions(self.level, self.seed, self.duration)
        start, planned = time.perf_counter(), 0.0
        try:
            for k, f in enumerate(fractions):
                if self._stop.is_set():
                    return
                t0 = start + k * period
                planned += f * period
                want = min(MAX_STOP * period, planned - self.stopped_s)
                if want > 0.001:
                    _signal_target(self.target, signal.SIGSTOP)
                    stopped = time.perf_counter()
                    self._stop.wait(want)
                    _signal_target(self.target, signal.SIGCONT)
                    self.stopped_s += time.perf_counter() - stopped
                self.cycled_s = time.perf_counter() - start
                self._stop.wait(max(0.0, t0 + period - time.perf_counter()))
        finally:
            _signal_target(self.target, signal.SIGCONT)

    def stop(self) -> None:
        """Continue the target (always, even if the thread died) and kill the competitor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.target is not None:
            _signal_target(self.target, signal.SIGCONT)
        if self.competitor is not None and self.competitor.poll() is None:
            self.competitor.kill()
            self.competitor.wait()


@contextlib.contextmanager
def neighbour(lvl: str | Level, seed: int, target_pid: int | None = None, duration_s: float = 3600.0,
              pin: bool = True, log=None) -> Iterator[Neighbour]:
    """The neighbour for the body of a ``with``: it stops (target continued, competitor killed)
    however the body ends."""
    n = Neighbour(lvl, seed, target_pid, duration_s, pin, log)
    try:
        yield n.start()
    finally:
        n.stop()


def run_under(lvl: str | Level, seed: int, cmd: Sequence[str], duration_s: float = 3600.0) -> int:
    """Run ``cmd`` in its own process group under the neighbour; its exit code (128 + signal when a
    signal ended it).  SIGINT/SIGTERM to us: the noise stops, then the signal goes on to ``cmd``."""
    try:
        proc = subprocess.Popen(list(cmd), start_new_session=True)
    except OSError as exc:
        print(f"noisy_neighbour: cannot run {cmd[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    n = Neighbour(lvl, seed, proc.pid, duration_s, log=lambda m: print(m, file=sys.stderr))
    handled = {}

    def forward(sig, _frame):
        n.stop()
        _signal_target(proc.pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        handled[sig] = signal.signal(sig, forward)
    try:
        n.start()
        timer = threading.Timer(duration_s, n.stop)
        timer.daemon = True
        timer.start()
        code = proc.wait()
        timer.cancel()
    finally:
        n.stop()
        for sig, old in handled.items():
            signal.signal(sig, old)
    return code if code >= 0 else 128 - code


# ---------------------------------------------------------------------------------------------
# calibration: a fixed workload in short blocks under each level


def _workload(seconds: float, block_s: float) -> int:
    """Child of ``--calibrate``: alternate blocks of a 1-thread GEMM and a memory-bound streaming
    add (whose blocks the competitor hits harder); one JSON line per block, with its wall and its
    CPU seconds per call (what a stop costs the first and not the second: levit_bench/oncpu.py)."""
    import torch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(192, 192, generator=g), torch.randn(192, 192, generator=g)
    c = torch.empty(192, 192)
    big = torch.zeros(4 * _llc_bytes() // 4)
    kinds = {"gemm": lambda: torch.mm(a, b, out=c), "memory": lambda: big.add_(1.0)}
    for f in kinds.values():
        f()
    end = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < end:
        kind = "gemm" if k % 2 == 0 else "memory"
        call, calls, t0, c0 = kinds[kind], 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < block_s or calls == 0:
            call()
            calls += 1
        t1, c1 = time.perf_counter(), time.process_time()
        print(json.dumps({"kind": kind, "t": t0, "per_call": (t1 - t0) / calls, "cpu_per_call": (c1 - c0) / calls}),
              flush=True)
        k += 1
    return 0


def _lagged_corr(t: np.ndarray, x: np.ndarray, u: np.ndarray, y: np.ndarray, lag: float) -> float:
    """Correlation of x at time t with y at a time between 0.7 and 1.3 lag later (all pairs)."""
    d = u[None, :] - t[:, None]
    i, j = np.nonzero((d >= 0.7 * lag) & (d <= 1.3 * lag))
    if len(i) < 5:
        return float("nan")
    return float(np.corrcoef(x[i], y[j])[0, 1])


def calibrate(seconds: float, seeds: int, block_s: float, base_seed: int) -> dict:
    lags = (1, 2, 5, 10, 20)
    report = {}
    for name in LEVELS:
        runs = []
        for k in range(seeds):
            seed = derive_seed(base_seed, k)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_workload", str(seconds), str(block_s)]
            proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, text=True)
            with neighbour(name, seed, proc.pid, duration_s=seconds + 30):
                out, _ = proc.communicate()
            rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            runs.append(rows)
            print(f"  {name} seed {seed}: {len(rows)} blocks", file=sys.stderr, flush=True)
        entry = {}
        for kind in ("gemm", "memory"):
            means, spreads, ac = [], [], {lag: [] for lag in lags}
            cpu_means, cpu_spreads, shares = [], [], []
            for rows in runs:
                t = np.array([r["t"] for r in rows if r["kind"] == kind])
                x = np.log([r["per_call"] for r in rows if r["kind"] == kind])
                means.append(float(np.mean(x)))
                spreads.append(float(np.std(x, ddof=1)))
                c = np.log([r["cpu_per_call"] for r in rows if r["kind"] == kind])
                cpu_means.append(float(np.mean(c)))
                cpu_spreads.append(float(np.std(c, ddof=1)))
                shares.append(float(np.exp(np.mean(c - x))))
                for lag in lags:
                    ac[lag].append(_lagged_corr(t, x - x.mean(), t, x - x.mean(), lag))
            entry[kind] = {"block_sd": float(np.mean(spreads)),
                           "between_run_sd": float(np.std(means, ddof=1)) if len(means) > 1 else float("nan"),
                           "autocorr": {lag: float(np.nanmean(v)) for lag, v in ac.items()},
                           "slowdown_vs_quiet": None, "mean_log": float(np.mean(means)),
                           "cpu": {"block_sd": float(np.mean(cpu_spreads)), "on_cpu_share": float(np.mean(shares)),
                                   "between_run_sd": float(np.std(cpu_means, ddof=1)) if len(cpu_means) > 1
                                   else float("nan"), "run_means": cpu_means},
                           "run_means": means}
        cross = []  # gemm block vs the memory block right after it: common-mode share
        for rows in runs:
            g = np.array([(r["t"], math.log(r["per_call"])) for r in rows if r["kind"] == "gemm"])
            m = np.array([(r["t"], math.log(r["per_call"])) for r in rows if r["kind"] == "memory"])
            n = min(len(g), len(m))
            if n > 5:
                cross.append(float(np.corrcoef(g[:n, 1] - g[:n, 1].mean(), m[:n, 1] - m[:n, 1].mean())[0, 1]))
        entry["gemm_memory_adjacent_corr"] = float(np.mean(cross)) if cross else float("nan")
        report[name] = entry
    for kind in ("gemm", "memory"):
        report["ci-like"][kind]["slowdown_vs_quiet"] = math.exp(report["ci-like"][kind]["mean_log"]
                                                                - report["quiet"][kind]["mean_log"])
    return report


def injected(lvl: str | Level, seeds: int = 1000, seconds: float = 60.0) -> dict:
    """What a level puts in, from its traces alone (no machine): the SD of a run's mean log
    slowdown between seeds, the walk's SD and its autocorrelation at the calibration's lags."""
    lvl = level(lvl)
    means = [slowdown_trace(lvl, seed, seconds).mean() for seed in range(seeds)]
    return {"between_run_sd": float(np.std(means)), "walk_sd": lvl.walk_sd,
            "autocorr": {lag: math.exp(-lag / lvl.tau_s) if lvl.walk_sd else 0.0 for lag in (1, 2, 5, 10, 20)},
            "mean_slowdown": float(np.mean([np.exp(slowdown_trace(lvl, seed, seconds)).mean() for seed in range(20)]))}


def print_calibration(r: dict) -> None:
    i = injected("ci-like")
    print(f"ci-like puts in: between-run SD {i['between_run_sd']:.1%}, walk SD {i['walk_sd']:.1%}, autocorr "
          + " ".join(f"{v:+.2f}" for v in i["autocorr"].values()) + f", mean slowdown {i['mean_slowdown']:.2f}× "
          "(plus the competitor's memory traffic)")
    print("level    workload  block SD  between-run SD  autocorr at 1/2/5/10/20 s          slowdown")
    for name in LEVELS:
        for kind in ("gemm", "memory"):
            e = r[name][kind]
            ac = " ".join(f"{v:+.2f}" for v in e["autocorr"].values())
            slow = f"{e['slowdown_vs_quiet']:.2f}×" if e["slowdown_vs_quiet"] else ""
            print(f"{name:8} {kind:8} {e['block_sd']:8.1%}  {e['between_run_sd']:14.1%}  {ac:34} {slow}")
            if "cpu" in e:  # the same blocks' CPU seconds per call: what is left once a stop costs nothing
                c = e["cpu"]
                print(f"{'':8} {'  on CPU':8} {c['block_sd']:8.1%}  {c['between_run_sd']:14.1%}  "
                      f"on-CPU share {c['on_cpu_share']:.2f}")
        print(f"{name:8} gemm↔memory, adjacent blocks: correlation {r[name]['gemm_memory_adjacent_corr']:+.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_compete"]:
        return _compete(argv[1], int(argv[2]), float(argv[3]), int(argv[4]), int(argv[5]))
    if argv[:1] == ["--_workload"]:
        return _workload(float(argv[1]), float(argv[2]))
    cmd: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, cmd = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                usage="%(prog)s --level LEVEL --seed S [--duration SECONDS] -- CMD ...\n"
                                "       %(prog)s --calibrate [--seconds 75] [--seeds 3]")
    p.add_argument("--level", choices=list(LEVELS), default="ci-like")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=3600.0, help="stop the noise after this many seconds")
    p.add_argument("--calibrate", action="store_true", help="time a fixed workload under each level")
    p.add_argument("--seconds", type=float, default=75.0, help="--calibrate: seconds per run")
    p.add_argument("--seeds", type=int, default=3, help="--calibrate: runs (seeds) per level")
    p.add_argument("--block", type=float, default=0.25, help="--calibrate: seconds per block")
    p.add_argument("--json", default=None, help="--calibrate: also write the figures here")
    args = p.parse_args(argv)
    if not (args.duration > 0 and math.isfinite(args.duration)):
        p.error("--duration must be a positive number of seconds")
    if args.calibrate:
        report = calibrate(args.seconds, max(1, args.seeds), args.block, args.seed)
        print_calibration(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        return 0
    if not cmd:
        p.error("give the command to run after --")
    return run_under(args.level, args.seed, cmd, args.duration)


if __name__ == "__main__":
    sys.exit(main())
