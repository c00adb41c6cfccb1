"""Why ONNX Runtime and OpenVINO speed EfficientNet up far more than LeViT: what each does to the graph.

For one model it prints

* where each runtime spends a call, by op category (``levit_bench.profiling``, the package behind
  ``levit-bench profile``: torch.profiler, ONNX Runtime's session profiling, OpenVINO's counters);
* the ONNX graph the ``onnxruntime`` backend exports, the graph ONNX Runtime makes of it with the
  backend's own session options, and the runtime graph of the model as the ``openvino`` backend
  compiles it, with the layers OpenVINO fused into one convolution.

Usage::

    python benchmarks/runtime_graphs.py --model efficientnet_b2
    python benchmarks/runtime_graphs.py --model levit_192
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import levit_bench as lb  # noqa: E402
from levit_bench.backends import BACKENDS, ExportCache, Settings  # noqa: E402
from levit_bench.selection import Selection  # noqa: E402
from levit_bench.backends.onnxruntime import session_options  # noqa: E402
from levit_bench.cli import render  # noqa: E402
from levit_bench.profiling import profile_entries  # noqa: E402
from levit_bench.profiling.table import categories_table, ops_table  # noqa: E402
from levit_bench.runstate import run_state  # noqa: E402


def where_time_goes(model: str, batch_size: int, settings: Settings, top: int = 6) -> None:
    """The op-category breakdown of each runtime (as ``levit-bench profile`` prints it)."""
    backends = [b for b in ("torch", "onnxruntime", "openvino") if BACKENDS[b].unavailable_reason(settings) is None]
    profiles = profile_entries(Selection((model,), tuple(backends), (batch_size,), (settings.precision,), settings))
    con = render.console()
    con.print(categories_table(profiles))
    for p in profiles:
        if p.ok:
            con.print(ops_table(p, top))


def ort_graph(model: torch.nn.Module, model_id, x: torch.Tensor, settings: Settings, cache: ExportCache) -> None:
    """The ONNX file the onnxruntime backend runs, and the graph its session options make of it."""
    reason = BACKENDS["onnxruntime"].unavailable_reason(settings)
    if reason:
        print(f"ONNX Runtime: {reason}")
        return
    import onnx
    import onnxruntime as ort

    path = Path(BACKENDS["onnxruntime"].prepare(model, model_id, x, settings, cache).artifact)
    print("ONNX graph:", collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node).most_common(8))
    with tempfile.TemporaryDirectory() as tmp:
        opts = session_options(settings)
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        optimized = onnx.load(opts.optimized_model_filepath)
    print("ONNX Runtime, optimised:", collections.Counter(n.op_type for n in optimized.graph.node).most_common(8))


def openvino_graph(model: torch.nn.Module, model_id, x: torch.Tensor, settings: Settings,
                   cache: ExportCache) -> None:
    """The runtime graph of the model exactly as the openvino backend compiles it."""
    reason = BACKENDS["openvino"].unavailable_reason(settings)
    if reason:
        print(f"OpenVINO: {reason}")
        return
    ops = BACKENDS["openvino"].prepare(model, model_id, x, settings, cache).runner.compiled.get_runtime_model().get_ops()
    kinds = [op.get_rt_info()["layerType"].astype(str) for op in ops]
    print("OpenVINO, compiled:", collections.Counter(kinds).most_common(8))
    merged = [op.get_rt_info()["originalLayersNames"].astype(str) for op, kind in zip(ops, kinds)
              if kind in ("Convolution", "FullyConnected")]
    with_more = sum("," in names for names in merged)
    print(f"  {with_more} of {len(merged)} convolution/FC nodes carry fused layers, e.g. {merged[len(merged) // 2]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="efficientnet_b2")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    settings = Settings(threads=args.threads)
    print(f"{args.model}, batch {args.batch_size}, {args.threads} thread(s)")
    where_time_goes(args.model, args.batch_size, settings)
    cache = ExportCache()
    with run_state(args.threads, cache.root):
        built = lb.zoo.subject(args.model)
        size = built.model_id.img_size
        x = torch.randn(args.batch_size, 3, size, size)
        ort_graph(built.fused, built.model_id, x, settings, cache)
        openvino_graph(built.fused, built.model_id, x, settings, cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
