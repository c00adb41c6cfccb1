"""Why ONNX Runtime and OpenVINO speed EfficientNet up far more than LeViT: what each does to the graph.

For one model (BN already folded by ``levit_bench.fuse``) it prints

* where eager PyTorch spends a forward (torch profiler, self CPU time by op; for convolutions the
  share of depthwise against the rest, timed per module);
* the exported ONNX graph's op counts, ONNX Runtime's optimised graph (full optimisation, as the
  ``onnxruntime`` backend runs it) and OpenVINO's compiled runtime graph, with the layers OpenVINO
  fused into one convolution.

Usage::

    python benchmarks/runtime_graphs.py --model efficientnet_b2
    python benchmarks/runtime_graphs.py --model levit_192
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import levit_bench as lb  # noqa: E402
from levit_bench.backends import ExportCache  # noqa: E402
from levit_bench.backends.onnx_export import export_onnx  # noqa: E402


def eager_profile(model: torch.nn.Module, x: torch.Tensor, top: int = 8) -> None:
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        with torch.profiler.profile() as prof:
            for _ in range(3):
                model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print("eager, self CPU time by op:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"  {e.key:34} {e.self_cpu_time_total / total:6.1%}")


def conv_split(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Wall-time share of depthwise and other convolutions in one forward (per-module timers)."""
    spent = {"depthwise": 0.0, "other": 0.0}
    start: dict[int, float] = {}
    hooks = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            kind = "depthwise" if mod.groups > 1 and mod.groups == mod.in_channels else "other"
            hooks.append(mod.register_forward_pre_hook(lambda m, _i: start.__setitem__(id(m), time.perf_counter())))
            hooks.append(mod.register_forward_hook(
                lambda m, _i, _o, kind=kind: spent.__setitem__(kind, spent[kind] + time.perf_counter() - start[id(m)])))
    if not hooks:
        return
    with torch.inference_mode():
        begin = time.perf_counter()
        model(x)
        total = time.perf_counter() - begin
    for h in hooks:
        h.remove()
    print(f"  convolutions: depthwise {spent['depthwise'] / total:.0%}, other {spent['other'] / total:.0%} of a forward")


def graphs(onnx_path: Path, shape: list[int], threads: int) -> None:
    import onnx
    import onnxruntime as ort

    g = onnx.load(str(onnx_path))
    print("ONNX graph:", collections.Counter(n.op_type for n in g.graph.node).most_common(8))
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
    print("ONNX Runtime, optimised:", collections.Counter(n.op_type for n in opt.graph.node).most_common(8))
    try:
        import openvino as ov
    except ImportError:
        print("OpenVINO: not installed")
        return
    core = ov.Core()
    model = core.read_model(str(onnx_path))
    model.reshape({0: shape})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    ops = compiled.get_runtime_model().get_ops()
    kinds = collections.Counter(op.get_rt_info()["layerType"].astype(str) for op in ops)
    print("OpenVINO, compiled:", kinds.most_common(8))
    merged = [op.get_rt_info()["originalLayersNames"].astype(str) for op in ops
              if op.get_rt_info()["layerType"].astype(str) in ("Convolution", "FullyConnected")]
    with_more = sum("," in names for names in merged)
    print(f"  {with_more} of {len(merged)} convolution/FC nodes carry fused layers, e.g. {merged[len(merged) // 2]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="efficientnet_b2")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = lb.fuse(lb.create_model(args.model))
    model.levit_bench_name = args.model
    size = lb.model_spec(args.model).img_size
    x = torch.randn(args.batch_size, 3, size, size)
    print(f"{args.model}, batch {args.batch_size}, {args.threads} thread(s); "
          f"BatchNorm2d left after fuse: {sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())}")
    eager_profile(model, x)
    conv_split(model, x)
    path, *_ = export_onnx(model, x, ExportCache())
    graphs(path, list(x.shape), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
