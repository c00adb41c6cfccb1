"""How long ``results.load`` and ``gate.compare_files`` take on a big results file (issue 15, item 17).

Synthesises two results files of 2,500 entries with 2,000 samples each (about 66 MB apiece, like
the file in the issue: 28 s to validate, ~15 minutes to compare before the fixes), from the top
level and the first successful entry of a committed results file, then times loading one and
comparing them.  Target: each under 30 s on the project's 2-core VM.  Usage::

    python benchmarks/big_results.py                      # 2,500 entries x 2,000 samples
    python benchmarks/big_results.py --entries 100 --keep /tmp/big   # smaller; keep the files

``--only load`` or ``--only compare`` times one of the two.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = [f"model_{i:02d}" for i in range(25)]
BACKENDS = ["torch", "torch-compile", "torchscript", "onnxruntime", "openvino"]


def template() -> tuple[dict, dict]:
    """(top level without entries, one successful entry) of a committed results file."""
    for path in sorted(glob.glob(str(ROOT / "results" / "*.json"))):
        data = json.loads(Path(path).read_text())
        if (data.get("system") or {}).get("emulated"):
            continue  # emulated timings are refused by compare
        ok = [e for e in data.get("results", []) if e.get("status") == "ok"]
        if ok:
            return {**data, "results": []}, {**ok[0], "rounds": None}  # the samples are synthesised
    raise SystemExit("no committed results file with a successful entry under results/")


def synthesise(n_entries: int, n_samples: int, slowdown: float, seed: int) -> dict:
    top, proto = template()
    rng = np.random.default_rng(seed)
    keys = [(m, b, bs) for m in MODELS for b in BACKENDS for bs in range(1, 1 + -(-n_entries // (25 * 5)))]
    entries = []
    for model, backend, batch in keys[:n_entries]:
        median = 0.002 * batch * (1 + MODELS.index(model) / 10) * slowdown
        samples = median * rng.lognormal(0.0, 0.05, n_samples)
        q25, med, q75 = (float(v) for v in np.percentile(samples, [25, 50, 75]))
        samples = np.round(samples, 9).tolist()  # nanoseconds: ~13 bytes a sample, as a real file
        e = copy.deepcopy(proto)
        e.update(model=model, backend=backend, batch_size=batch, samples_s=samples,
                 images_per_call=batch, images_per_second=batch / med,
                 ci95=[batch / (med * 1.01), batch / (med * 0.99)], iqr=batch / q25 - batch / q75,
                 latency_ms={"p50": med * 1e3, "p90": q75 * 1e3, "p99": max(samples) * 1e3},
                 time_s={"median": med, "iqr": q75 - q25, "min": min(samples)})
        entries.append(e)
    top["results"] = entries
    return top


def timed(label: str, fn) -> float:
    """Wall time (the target) and this process's CPU time (less sensitive to a busy machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    took = time.perf_counter() - start
    print(f"{label}: {took:.1f} s wall, {time.process_time() - cpu:.1f} s CPU", flush=True)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=2500)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    ap.add_argument("--only", choices=["load", "compare"], default=None)
    args = ap.parse_args()

    from levit_bench import results

    try:
        from levit_bench.gate import compare_files
    except ImportError:  # the gate moved into a package
        from levit_bench.gate.compare import compare_files  # type: ignore[no-redef]

    folder = args.keep or Path(tempfile.mkdtemp(prefix="big-results-"))
    folder.mkdir(parents=True, exist_ok=True)
    base, new = folder / "base.json", folder / "new.json"
    start = time.perf_counter()
    for path, slowdown, seed in ((base, 1.0, 0), (new, 1.03, 1)):
        path.write_text(json.dumps(synthesise(args.entries, args.samples, slowdown, seed)))
    print(f"{args.entries} entries x {args.samples} samples: {base.stat().st_size / 1e6:.1f} MB per file "
          f"(written in {time.perf_counter() - start:.1f} s) in {folder}", flush=True)
    if args.only in (None, "load"):
        timed("results.load(base)", lambda: results.load(base))
    if args.only in (None, "compare"):
        timed("gate.compare_files(base, new)", lambda: compare_files(base, new))
    if args.keep is None:
        for path in (base, new):
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
