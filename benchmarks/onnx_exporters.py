"""Which ONNX exporter: their export seconds, and the speed of their graphs side by side.

    python benchmarks/onnx_exporters.py levit_128s efficientnet_b0 [--rounds 8]

For each model (fused, fp32, seeded random weights): exports it with the TorchScript exporter
(opset 17) and with the dynamo exporter (opset 18, onnxscript's optimizer), as
through ``backends/onnx_export.py``'s own calls, timing each export; checks both graphs against eager fp32 in
ONNX Runtime and OpenVINO; then times the four (runtime, exporter) sessions at batch 16, one thread,
interleaved in rounds (three calls each per round), and prints per runtime the per-round ratio
torchscript/dynamo (median, min, max).  Figures: docs/performance.md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch

import levit_bench as lb
from levit_bench.backends.onnx_export import export_dynamo, export_torchscript


def export(model: torch.nn.Module, path: Path, dynamo: bool) -> float:
    """Seconds of one export by the package's own exporter call."""
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        (export_dynamo if dynamo else export_torchscript)(model, torch.randn(2, 3, 224, 224), path)
    return time.perf_counter() - start


def compare(name: str, rounds: int, folder: Path) -> None:
    model = lb.fuse(lb.create_model(name)).eval()
    x = np.random.default_rng(0).standard_normal((16, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    calls = {}
    for exporter in ("torchscript", "dynamo"):
        path = folder / f"{name}-{exporter}.onnx"
        print(f"{name}: {exporter} exporter {export(model, path, exporter == 'dynamo'):.1f} s")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        calls["onnxruntime", exporter] = lambda s=session: s.run(None, {"input": x})[0]
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
        calls["openvino", exporter] = lambda c=compiled: c(x)[0]
    for (runtime, exporter), call in calls.items():
        print(f"  {runtime}/{exporter}: max |logits - eager| {float(np.abs(call() - ref).max()):.2e}")
    seconds = {k: [] for k in calls}
    for _ in range(rounds):
        for k, call in calls.items():
            start = time.perf_counter()
            for _ in range(3):
                call()
            seconds[k].append((time.perf_counter() - start) / 3)
    for runtime in ("onnxruntime", "openvino"):
        ratios = [a / b for a, b in zip(seconds[runtime, "torchscript"], seconds[runtime, "dynamo"])]
        print(f"  {runtime}: s/call torchscript {statistics.median(seconds[runtime, 'torchscript']):.4f}, "
              f"dynamo {statistics.median(seconds[runtime, 'dynamo']):.4f}; per-round ratio median "
              f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            compare(name, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
