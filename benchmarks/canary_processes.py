"""Does a canary candidate run at the same speed in every process?  (issue 21, item 2; figures in
docs/measurement.md, "A canary must agree with itself across processes")

A run's canary-adjusted figures are scaled by that run's median canary, so a canary whose speed
depends on the process that built it (where its buffers landed, which kernel its first call chose)
puts its own per-process offset into every adjusted figure of the run: on 2026-12-03 one run's
median canary was 1.45 ms against 0.85-1.04 ms in two others while its entries were only 4-14%
slower.  This starts ``--processes`` workers that each build every candidate of ``canary.CANARIES``
(renewing its buffers before every window, as a run's canary does, and, as ``NAME:kept``, keeping
them) and then, in seeded round-robin order (one process measures while the others wait, as a run's
blocks do), measures one window of each candidate per turn.  For each candidate it prints:

* ``process sd``: the SD of the processes' mean log window after removing each round's mean (the
  per-process offset a run's adjusted figures would inherit);
* ``window sd``: the SD of one window's log time around its process's and round's means (the noise
  that averaging over a run's blocks removes);
* ``spread``: slowest process mean over fastest.

    PYTHONPATH=$PWD python benchmarks/canary_processes.py --processes 6 --rounds 40

Say which state the machine was in (quiet, shared, a noisy neighbour): only the process sd is the
canary's own; a busy machine inflates the window sd of every candidate alike.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _worker(conn, names: list[str], threads: int) -> None:
    """Build every candidate once, then measure the one named on each request until told to stop."""
    import torch

    torch.set_num_threads(threads)
    from levit_bench import canary

    built = {name: canary.build(name.removesuffix(":kept"), renew=not name.endswith(":kept")) for name in names}
    conn.send("ready")
    while (name := conn.recv()) is not None:
        conn.send(built[name].measure())


def measure(names: list[str], processes: int, rounds: int, threads: int, seed: int) -> np.ndarray:
    """Log seconds per call: array [candidate, round, process]."""
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for _ in range(processes):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, names, threads), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    try:
        for conn in pipes:
            assert conn.recv() == "ready"
        rng = np.random.default_rng(seed)
        out = np.empty((len(names), rounds, processes))
        for r in range(rounds):
            for k in rng.permutation(processes):
                for c in rng.permutation(len(names)):
                    pipes[k].send(names[c])
                    out[c, r, k] = np.log(pipes[k].recv())
        return out
    finally:
        for conn in pipes:
            conn.send(None)
        for p in procs:
            p.join(timeout=10)


def summarise(names: list[str], logs: np.ndarray) -> list[tuple[str, float, float, float]]:
    """(candidate, process sd, window sd, spread) from :func:`measure`'s array."""
    rows = []
    for name, x in zip(names, logs):
        centred = x - x.mean(axis=1, keepdims=True)  # remove each round's machine state
        per_process = centred.mean(axis=0)
        window = centred - per_process[None, :]
        rows.append((name, float(per_process.std(ddof=1)), float(window.std(ddof=1)),
                     float(np.exp(per_process.max() - per_process.min()))))
    return rows


def main(argv: list[str] | None = None) -> int:
    from levit_bench import canary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", default=",".join(n + k for n in canary.CANARIES for k in ("", ":kept")),
                    help="comma-separated; NAME:kept keeps its buffers for the whole process (default: every "
                         "candidate both ways)")
    args = ap.parse_args(argv)
    names = [n for n in args.candidates.split(",") if n]
    unknown = sorted({n.removesuffix(":kept") for n in names} - set(canary.CANARIES))
    if unknown or args.processes < 2 or args.rounds < 2:
        raise SystemExit(f"canary_processes: need >= 2 processes and rounds and known candidates (unknown: {unknown})")
    logs = measure(names, args.processes, args.rounds, args.threads, args.seed)
    print(f"{args.processes} processes x {args.rounds} rounds, {args.threads} thread(s); log seconds per call")
    print(f"{'candidate':10} {'process sd':>10} {'window sd':>10} {'spread':>8}")
    for name, process_sd, window_sd, spread in summarise(names, logs):
        print(f"{name:10} {process_sd:10.3f} {window_sd:10.3f} {spread:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
