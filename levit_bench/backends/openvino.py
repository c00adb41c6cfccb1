"""OpenVINO on CPU (any x86-64, Intel or not): the shared ONNX export, compiled at a static shape.

Synchronous mode uses the LATENCY hint and one infer request; asynchronous mode the THROUGHPUT hint
and an ``AsyncInferQueue`` with the device's optimal number of requests, counting images as
``benchmark_app`` does (all batches completed / wall time).  Precision is f32 unless bf16/fp16 is
asked for: on CPUs with bf16 units OpenVINO otherwise computes in bf16 silently.  Compiled blobs go
into the export cache (OpenVINO's CACHE_DIR).

int8: the fp32 export quantized with ``nncf.quantize`` (post-training, target CPU), its IR (xml and
weights) kept in the export cache as one uncompressed zip; the layers left in floating point run in
f32.  Which Convolution/FullyConnected/MatMul layers OpenVINO runs in u8/i8 is read from the
compiled model's runtime graph and noted; none at all is a failed export.  Recipe per family: see
:data:`NNCF_PRESET`.
"""
from __future__ import annotations

import functools
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..spec import ModelId, Settings
from .base import Backend, Prepared, Runner, missing_package
from .cache import ExportCache
from .onnx_export import export_onnx
from .quantize import Calibration, cached_quantization, calibration_for, quiet, recipe_text, weights_7bit

#: the precision hint: int8 models run their unquantized layers in f32 (never bf16 unasked)
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
#: OpenVINO's name in ``OPTIMIZATION_CAPABILITIES`` for a CPU that computes natively in this precision
OV_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
#: nncf's preset per model family (symmetric weights; "mixed": asymmetric activations).  Attention
#: models get asymmetric activations (Hardswish/GELU outputs and attention maps are one-sided); CNNs
#: nncf's default.  ``model_type`` stays None: nncf's TRANSFORMER scheme adds SmoothQuant, which on
#: LeViT's seeded weights broke parity (centered cosine 0.59; its residual projections are zero at
#: initialisation), and without SmoothQuant it agreed no better than the default scheme.
NNCF_PRESET = {"levit": "mixed", "deit": "mixed", "graft": "mixed"}
#: the dense layers whose runtime precision says whether OpenVINO computes in int8
DENSE_LAYERS = frozenset({"Convolution", "FullyConnected", "MatMul", "Gemm", "GroupConvolution", "Deconvolution"})


#: OpenVINO's element type name (``compiled.get_property("INFERENCE_PRECISION_HINT")``) -> ours
FROM_OV_TYPE = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


@functools.lru_cache(maxsize=1)
def optimization_capabilities() -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (e.g. ``FP32, INT8, BIN, EXPORT_IMPORT``);
    empty when OpenVINO or its CPU plugin is missing.  Asked once per process."""
    try:
        import openvino as ov

        return tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - no OpenVINO, or no CPU plugin: nothing is native
        return ()


def native_precisions() -> set[str]:
    """The precisions this CPU computes natively according to OpenVINO (``fp32``, and ``bf16``/``fp16``
    only on CPUs with those units); empty when OpenVINO is missing."""
    caps = set(optimization_capabilities())
    return {p for p, cap in OV_CAPABILITY.items() if cap in caps}


def executed_precision(reported: Any, native: set[str]) -> str:
    """Our name for the precision a compiled model computes in, from its ``INFERENCE_PRECISION_HINT``
    property (an element type: ``f32``, ``bf16``, ``f16``), cross-checked with the CPU's native
    precisions: a reduced precision the CPU has no units for is computed in f32."""
    name = reported.get_type_name() if hasattr(reported, "get_type_name") else str(reported)
    name = name.strip().lower()
    ours = FROM_OV_TYPE.get(name) or {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name)
    if ours is None:
        raise RuntimeError(f"OpenVINO reports an unknown inference precision {name!r}")
    if ours != "fp32" and native and ours not in native:
        return "fp32"
    return ours


def _as_array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().float().numpy())


def _start_and_wait(request: Any) -> Callable[[], None]:
    """A request's call as the timed loop makes it (the GIL is free while it waits)."""
    def call() -> None:
        request.start_async()
        request.wait()

    return call


class OpenVinoSyncRunner(Runner):
    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._keep: np.ndarray | None = None

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        import openvino as ov

        self._keep = _as_array(x)  # the request reads this memory; keep it alive
        self.request.set_input_tensor(ov.Tensor(self._keep, shared_memory=True))
        request = self.request

        def call() -> None:
            request.start_async()
            request.wait()

        return call

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = self.compiled.create_infer_request()
        request.infer({0: _as_array(x)})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32))

    def bind_many(self, x: torch.Tensor, n: int) -> list[Callable[[], Any]]:
        """One infer request per thread (a request runs one inference at a time); the compiled
        model's streams run them side by side (``--openvino-mode async``: the throughput hint's
        streams; sync: the latency hint's one stream)."""
        import openvino as ov

        self._keep = _as_array(x)
        calls = []
        for _ in range(n):
            request = self.compiled.create_infer_request()
            request.set_input_tensor(ov.Tensor(self._keep, shared_memory=True))
            calls.append(_start_and_wait(request))
        return calls

    def concurrency_facts(self, n: int) -> dict[str, Any]:
        facts: dict[str, Any] = {"infer_requests": n}
        for name in ("NUM_STREAMS", "PERFORMANCE_HINT", "OPTIMAL_NUMBER_OF_INFER_REQUESTS"):
            try:
                facts[name.lower()] = str(self.compiled.get_property(name))
            except Exception:  # noqa: BLE001 - a property this version does not have
                pass
        return facts


class OpenVinoAsyncRunner(OpenVinoSyncRunner):
    def __init__(self, compiled: Any):
        import openvino as ov

        super().__init__(compiled)
        self.queue = ov.AsyncInferQueue(compiled, 0)  # 0: the device's optimal number of requests
        self.batches_per_call = len(self.queue)

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        import openvino as ov

        self._keep = _as_array(x)
        tensor = ov.Tensor(self._keep, shared_memory=True)
        for i in range(len(self.queue)):
            self.queue[i].set_input_tensor(tensor)
        queue, n = self.queue, len(self.queue)

        def call() -> None:
            for _ in range(n):
                queue.start_async()
            queue.wait_all()

        return call


class OpenVinoBackend(Backend):
    name = "openvino"
    devices = ("cpu",)
    precisions = ("fp32", "bf16", "fp16", "int8")

    def runtime_missing(self) -> str | None:
        return missing_package("openvino", "openvino") or missing_package("onnx", "onnx onnxscript")

    def unavailable_reason(self, settings: Settings) -> str | None:
        """Besides the usual reasons: fp16/bf16/int8 on a CPU without those units, where OpenVINO would
        silently compute in f32 (the entry would be an f32 figure labelled fp16/bf16), and int8
        without nncf."""
        reason = super().unavailable_reason(settings)
        if reason is not None or settings.precision == "fp32":
            return reason
        if settings.precision == "int8" and missing_package("nncf", "nncf"):
            return missing_package("nncf", "nncf")
        if settings.precision not in native_precisions():
            caps = ", ".join(optimization_capabilities()) or "none reported"
            return (f"this CPU has no {settings.precision} units: OpenVINO would compute in f32 "
                    f"(OPTIMIZATION_CAPABILITIES: {caps})")
        return None

    def versions(self) -> dict[str, str]:
        import openvino as ov

        return {**super().versions(), "openvino": ov.get_version()}

    def prepare(self, model: nn.Module, model_id: ModelId, example: torch.Tensor, settings: Settings,
                cache: ExportCache) -> Prepared:
        import openvino as ov

        path, reused, export_s, exporter = export_onnx(model, model_id, example, cache)
        core = ov.Core()
        int8_notes: list[str] = []
        if settings.precision == "int8":
            path, reused, quantize_s, int8_notes = self._quantized(path, model_id, settings, cache)
            export_s += quantize_s
            ov_model = read_packed(core, path)
        else:
            ov_model = core.read_model(str(path))
        ov_model.reshape({0: list(example.shape)})  # static shape, as benchmark_app -shape does
        hint = "THROUGHPUT" if settings.options.openvino_mode == "async" else "LATENCY"
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": OV_PRECISION[settings.precision],
            "CACHE_DIR": str(cache.runtime_dir("openvino")),
        }
        config["INFERENCE_NUM_THREADS"] = settings.threads
        start = time.perf_counter()
        compiled = core.compile_model(ov_model, "CPU", config)
        compile_s = time.perf_counter() - start
        if settings.precision == "int8":
            integer, dense = int8_layers(compiled)
            if integer == 0:
                raise ExportError(f"int8: OpenVINO runs none of the {dense} dense layers of the quantized model "
                                  "in int8 (it would compute in f32)")
            int8_notes.append(f"OpenVINO runs {integer} of {dense} Convolution/FullyConnected/MatMul in u8/i8")
        runner = OpenVinoAsyncRunner(compiled) if settings.options.openvino_mode == "async" else OpenVinoSyncRunner(compiled)
        prop = compiled.get_property("INFERENCE_PRECISION_HINT")
        actual = prop.get_type_name() if hasattr(prop, "get_type_name") else str(prop)
        executed = executed_precision(prop, native_precisions())
        notes = [exporter, f"{hint.lower()} hint, precision {actual}, compile {compile_s:.2f}s"]
        if settings.precision == "int8":
            executed = "int8"  # its dense layers run in u8/i8 (checked above); the rest in f32, as hinted
            notes += int8_notes
        if executed != settings.precision:
            notes.append(f"asked for {settings.precision}, OpenVINO computes in {executed}")
        if settings.options.openvino_mode == "async":
            notes.append(f"{runner.batches_per_call} async requests")
        return Prepared(runner, export_s, str(path), path.stat().st_size, reused, notes=notes,
                        executed_precision=executed)

    def _quantized(self, source: Path, model_id: ModelId, settings: Settings,
                   cache: ExportCache) -> tuple[Path, bool, float, list[str]]:
        """(packed int8 IR, reused, seconds quantizing, notes) for the fp32 export at ``source``."""
        calibration = calibration_for(model_id, settings.options.calibration)
        recipe = int8_recipe(model_id.family, calibration.count)
        art = cached_quantization(cache, self.name, model_id, source, calibration, recipe, self.nncf_versions(),
                                  "model.zip", lambda tmp: quantize_nncf(source, calibration, recipe, tmp))
        return art.path, art.reused, art.seconds, [f"int8: nncf.quantize, {recipe_text(recipe)}", calibration.note()]

    def nncf_versions(self) -> dict[str, str]:
        import nncf

        return {**self.versions(), "nncf": nncf.__version__}


def int8_recipe(family: str, subset: int) -> dict[str, Any]:
    """nncf's settings for a model of ``family`` (``ModelId.family``; they go into the cache key and
    the entry's notes)."""
    return {"preset": NNCF_PRESET.get(family, "performance"), "model_type": "none", "target device": "CPU",
            "overflow fix": "enable" if weights_7bit() else "first_layer_only", "subset": subset}


def quantize_nncf(source: Path, calibration: Calibration, recipe: dict[str, Any], out: Path) -> dict[str, Any]:
    """Quantize the fp32 ONNX model at ``source`` with nncf and write its IR to ``out`` (a zip)."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = ov.Core().read_model(str(source))
    dataset = nncf.Dataset(calibration.readable(), calibration.image)  # unreadable images skipped
    with quiet():
        quantized = nncf.quantize(
            model, dataset, preset=nncf.QuantizationPreset(recipe["preset"]), target_device=nncf.TargetDevice.CPU,
            subset_size=recipe["subset"], model_type=None,
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(recipe["overflow fix"])))
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        xml = Path(work) / "model.xml"
        ov.save_model(quantized, str(xml), compress_to_fp16=False)  # the default would halve fp32 weights
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            z.write(xml, "model.xml")
            z.write(xml.with_suffix(".bin"), "model.bin")
    return {}


def read_packed(core: Any, path: Path) -> Any:
    """The OpenVINO model in a zip written by :func:`quantize_nncf`."""
    import openvino as ov

    with zipfile.ZipFile(path) as z:
        xml, weights = z.read("model.xml"), z.read("model.bin")
    return core.read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy()))


def int8_layers(compiled: Any) -> tuple[int, int]:
    """(dense layers running in u8/i8, dense layers) of a compiled model's runtime graph."""
    integer = dense = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if kind in DENSE_LAYERS:
            dense += 1
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
            integer += precision.lower() in ("u8", "i8")
    return integer, dense
