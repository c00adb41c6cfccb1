"""Does the harness cost the runtimes their speed?  Measured side by side, in rounds.

* ONNX Runtime: the harness timing a runner (a run's own path: ``schedule.warm``, then
  ``schedule.run_rounds``, here one round per call of ours) against a bare
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
from collections.abc import Callable
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import levit_bench as lb  # noqa: E402
from levit_bench.backends import BACKENDS, ExportCache, Settings  # noqa: E402
from levit_bench.harness import TimingOptions  # noqa: E402
from levit_bench.parity import parity_input  # noqa: E402
from levit_bench.runstate import run_state  # noqa: E402
from levit_bench.schedule import Schedule, Timed, run_rounds, warm  # noqa: E402
from levit_bench.stats import summarize_calls  # noqa: E402


def harness_ips(runner, x, seconds: float, batch: int) -> float:
    """Images/s of ``runner`` timed as a run times an entry: warm-up, then one round of timed calls."""
    item = Timed("harness", runner.bind(x), runner.synchronize, False)
    timing = TimingOptions(warmup_s=0.2, warmup_calls=2, min_time_s=seconds, min_calls=5)
    warm(item, timing)
    run_rounds([item], timing, Schedule(rounds=1, seed=0))
    if item.error:
        raise RuntimeError(item.error)
    return summarize_calls(item.samples, batch * runner.batches_per_call).images_per_second


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


def benchmark_app_ips(onnx: Path, shape: list[int], settings: Settings, seconds: float, streams: int,
                      requests: int) -> float:
    """``benchmark_app`` configured as our compiled model is: with ``-nthreads`` the tool insists
    on ``-hint none``, so streams and requests are copied from what the hint chose for us."""
    cmd = ["benchmark_app", "-m", str(onnx), "-d", "CPU", "-hint", "none", "-api", settings.options.openvino_mode,
           "-nstreams", str(streams), "-nireq", str(requests), "-nthreads", str(settings.threads),
           "-shape", str(shape).replace(" ", ""), "-infer_precision", "f32",
           "-t", str(max(int(round(seconds)), 1))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    match = re.search(r"Throughput:\s*([\d.]+)\s*FPS", out)
    if not match:
        raise RuntimeError("benchmark_app printed no throughput:\n" + out[-2000:])
    return float(match.group(1))


def interleaved(ours: Callable[[], float], reference: Callable[[], float], rounds: int) -> tuple[float, list[float]]:
    """Per-round ratios ours/reference, measured A-B then B-A alternately so that a drift in the
    machine's speed does not favour whichever runs first; returns the median ratio and all ratios."""
    ratios = []
    for i in range(rounds):
        if i % 2 == 0:
            a = ours()
            b = reference()
        else:
            b = reference()
            a = ours()
        ratios.append(a / b)
    return statistics.median(ratios), ratios


def report(label: str, ratio: float, ratios: list[float]) -> None:
    verdict = "ok" if ratio >= 0.97 else "BELOW 0.97"
    print(f"{label:22} harness/reference median {ratio:.3f}  rounds {min(ratios):.3f}..{max(ratios):.3f}  {verdict}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="levit_128s")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--seconds", type=float, default=1.0)
    args = p.parse_args(argv)
    cache = ExportCache()
    with run_state(args.threads, cache.root):
        return _run(args, cache)


def _run(args: argparse.Namespace, cache: ExportCache) -> int:
    built = lb.zoo.subject(args.model)
    model, model_id, img_size = built.fused, built.model_id, built.model_id.img_size
    x = parity_input(args.batch_size, img_size)
    base = Settings(threads=args.threads)
    print(f"{args.model}, batch {args.batch_size}, {args.threads} thread(s), {args.rounds} interleaved rounds "
          f"of {args.seconds:g} s each side")

    reason = BACKENDS["onnxruntime"].unavailable_reason(base)
    if reason:
        print(f"onnxruntime: {reason}; skipped")
    else:
        ort = BACKENDS["onnxruntime"].prepare(model, model_id, x, base, cache)
        feed = {ort.runner.input_name: x.numpy()}
        ratio, ratios = interleaved(lambda: harness_ips(ort.runner, x, args.seconds, args.batch_size),
                                    lambda: bare_ort_ips(ort.runner.session, feed, args.seconds, args.batch_size),
                                    args.rounds)
        report("onnxruntime vs bare", ratio, ratios)
        ort.runner.close()

    reason = BACKENDS["openvino"].unavailable_reason(base)
    if reason:
        print(f"openvino: {reason}; skipped")
        return 0
    if not shutil.which("benchmark_app"):
        print("openvino: benchmark_app not found; skipped")
        return 0
    for mode in ("sync", "async"):
        settings = base.with_options(openvino_mode=mode)
        ov = BACKENDS["openvino"].prepare(model, model_id, x, settings, cache)
        streams = int(ov.runner.compiled.get_property("NUM_STREAMS"))
        requests = ov.runner.batches_per_call
        ratio, ratios = interleaved(
            lambda: harness_ips(ov.runner, x, args.seconds, args.batch_size),
            lambda: benchmark_app_ips(Path(ov.artifact), list(x.shape), settings, args.seconds, streams, requests),
            args.rounds)
        report(f"openvino {mode} ({streams} stream{'s' if streams > 1 else ''}, {requests} req)", ratio, ratios)
        ov.runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
