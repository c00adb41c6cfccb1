"""Does the harness cost the runtimes their speed?  Measured side by side, in rounds.

* ONNX Runtime: the harness timing a runner (``levit_bench.harness.measure``) against a bare
  ``session.run`` loop on the same session and input, in the same process.
* OpenVINO: the harness (sync mode: latency hint, one request; async mode: throughput hint,
  AsyncInferQueue) against ``benchmark_app`` (shipped with openvino) on the same ONNX file, same
  threads, batch, precision and mode, run as a subprocess between our rounds.

Target: harness / reference >= 0.97.  Usage::

    python benchmarks/harness_overhead.py --model levit_128s --threads 1 --batch-size 16
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import levit_bench as lb  # noqa: E402
from levit_bench.backends import BACKENDS, ExportCache, Settings  # noqa: E402
from levit_bench.harness import TimingOptions, apply_threads, measure  # noqa: E402
from levit_bench.parity import parity_input  # noqa: E402
from levit_bench.stats import summarize  # noqa: E402


def harness_ips(runner, x, seconds: float, batch: int) -> float:
    m = measure(runner.bind(x), TimingOptions(warmup_s=0.2, warmup_calls=2, min_time_s=seconds, min_calls=5))
    return summarize(m.samples_s, batch * runner.batches_per_call).images_per_second


def bare_ort_ips(session, feed: dict, seconds: float, batch: int) -> float:
    """The simplest honest loop: per-call perf_counter around session.run, median."""
    for _ in range(2):
        session.run(None, feed)
    times, begin = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - begin < seconds:
        a = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - a)
    return batch / statistics.median(times)


def benchmark_app_ips(onnx: Path, settings: Settings, seconds: float) -> float:
    mode = "async" if settings.openvino_mode == "async" else "sync"
    hint = "throughput" if mode == "async" else "latency"
    cmd = ["benchmark_app", "-m", str(onnx), "-d", "CPU", "-hint", hint, "-api", mode,
           "-shape", f"[{settings.batch_size},3,224,224]", "-infer_precision", "f32",
           "-nthreads", str(settings.threads), "-t", str(max(int(seconds), 1))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    match = re.search(r"Throughput:\s*([\d.]+)\s*FPS", out)
    if not match:
        raise RuntimeError("benchmark_app printed no throughput:\n" + out[-2000:])
    return float(match.group(1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="levit_128s")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    apply_threads(args.threads)
    cache = ExportCache()
    model = lb.fuse(lb.create_model(args.model))
    model.levit_bench_name = args.model
    x = parity_input(args.batch_size, lb.model_spec(args.model).img_size)
    base = Settings(threads=args.threads, batch_size=args.batch_size)

    ort = BACKENDS["onnxruntime"].prepare(model, x, base, cache)
    feed = {ort.runner.input_name: x.numpy()}
    ours, bare = [], []
    for _ in range(args.rounds):
        ours.append(harness_ips(ort.runner, x, args.seconds, args.batch_size))
        bare.append(bare_ort_ips(ort.runner.session, feed, args.seconds, args.batch_size))
    r = statistics.median(ours) / statistics.median(bare)
    print(f"onnxruntime  harness {statistics.median(ours):8.1f} img/s  bare session.run {statistics.median(bare):8.1f}"
          f"  ratio {r:.3f}  {'ok' if r >= 0.97 else 'BELOW 0.97'}")

    if not shutil.which("benchmark_app"):
        print("openvino     benchmark_app not found; skipped")
        return 0
    for mode in ("sync", "async"):
        settings = replace(base, openvino_mode=mode)
        ov = BACKENDS["openvino"].prepare(model, x, settings, cache)
        ours, ref = [], []
        for _ in range(args.rounds):
            ours.append(harness_ips(ov.runner, x, args.seconds, args.batch_size))
            ref.append(benchmark_app_ips(Path(ov.artifact), settings, args.seconds))
        r = statistics.median(ours) / statistics.median(ref)
        print(f"openvino {mode:5} harness {statistics.median(ours):8.1f} img/s  benchmark_app {statistics.median(ref):8.1f}"
              f"  ratio {r:.3f}  {'ok' if r >= 0.97 else 'BELOW 0.97'}")
        ov.runner.close()
        del ov
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
