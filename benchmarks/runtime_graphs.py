"""Why ONNX Runtime and OpenVINO speed EfficientNet up far more than LeViT: what each does to the graph.

For one model (BN already folded by ``levit_bench.fuse``) it prints

* where eager PyTorch spends a forward (torch profiler, self CPU time by op; for convolutions the
  share of depthwise against the rest, timed per module);
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
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import levit_bench as lb  # noqa: E402
from levit_bench.backends import BACKENDS, ExportCache, Settings  # noqa: E402
from levit_bench.backends.onnxruntime import session_options  # noqa: E402
from levit_bench.runstate import run_state  # noqa: E402
from levit_bench.spec import ModelId  # noqa: E402


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


class _ConvTimer:
    """Forward hooks that add each convolution's wall time to a depthwise or an other total."""

    def __init__(self, model: torch.nn.Module):
        self.spent = {"depthwise": 0.0, "other": 0.0}
        self._start = 0.0
        self.handles = []
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                self.handles.append(mod.register_forward_pre_hook(self._begin))
                self.handles.append(mod.register_forward_hook(self._end))

    def _begin(self, _mod, _inputs) -> None:
        self._start = time.perf_counter()

    def _end(self, mod, _inputs, _output) -> None:
        kind = "depthwise" if mod.groups > 1 and mod.groups == mod.in_channels else "other"
        self.spent[kind] += time.perf_counter() - self._start

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def conv_split(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Wall-time share of depthwise and other convolutions in one forward."""
    timer = _ConvTimer(model)
    with torch.inference_mode():
        begin = time.perf_counter()
        model(x)
        total = time.perf_counter() - begin
    timer.remove()
    if timer.handles:
        print(f"  convolutions: depthwise {timer.spent['depthwise'] / total:.0%}, "
              f"other {timer.spent['other'] / total:.0%} of a forward")


def ort_graph(model: torch.nn.Module, model_id: ModelId, x: torch.Tensor, settings: Settings,
              cache: ExportCache) -> None:
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


def openvino_graph(model: torch.nn.Module, model_id: ModelId, x: torch.Tensor, settings: Settings,
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
    cache = ExportCache()
    with run_state(args.threads, cache.root):
        return _run(args, cache)


def _run(args: argparse.Namespace, cache: ExportCache) -> int:
    built = lb.zoo.subject(args.model)
    model, model_id, size = built.fused, built.model_id, built.model_id.img_size
    x = torch.randn(args.batch_size, 3, size, size)
    print(f"{args.model}, batch {args.batch_size}, {args.threads} thread(s); "
          f"BatchNorm2d left after fuse: {sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())}")
    eager_profile(model, x)
    conv_split(model, x)
    settings = Settings(threads=args.threads)
    ort_graph(model, model_id, x, settings, cache)
    openvino_graph(model, model_id, x, settings, cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
