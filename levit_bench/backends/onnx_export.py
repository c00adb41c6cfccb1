"""One ONNX export per (model, weights, input shape), shared by ONNX Runtime and OpenVINO.

Exported with ``torch.onnx.export`` from the fused fp32 model with a dynamic batch axis: the
TorchScript-based exporter (opset 17) first, the dynamo exporter (opset 18) when it fails; the
artifact's notes say which one made it.  Why that order: on the 2-core VM the TorchScript exporter
wrote levit_128s in 2.8 s and the dynamo exporter in 22 s, and the two graphs ran at the same speed
within the noise in ONNX Runtime and OpenVINO (``docs/performance.md``); the export was most of a
cold run's preparation.
"""
from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ExportError, first_line
from ..spec import ModelId
from .cache import ExportCache

DYNAMO_OPSET = 18
TORCHSCRIPT_OPSET = 17  # the exporter tried first
EXPORTERS = "torchscript-then-dynamo"  # in the cache key: an artifact of the other order is not reused


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """The TorchScript-based exporter, dynamic batch axis."""
    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=TORCHSCRIPT_OPSET,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def export_dynamo(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """The dynamo exporter (``torch.export``, onnxscript's optimizer), dynamic batch axis."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=DYNAMO_OPSET, external_data=False,
                      input_names=["input"], output_names=["logits"], dynamic_shapes=({0: batch},), optimize=True)


def _export(model: nn.Module, example: torch.Tensor, path: Path) -> str:
    """Write ``model`` as ONNX to ``path``; returns which exporter made it."""
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        try:
            export_torchscript(model, example, path)
            return f"torchscript exporter, opset {TORCHSCRIPT_OPSET}"
        except Exception as exc:  # noqa: BLE001 - fall back, then report the first error line
            first = first_line(exc)
        try:
            export_dynamo(model, example, path)
            return f"dynamo exporter, opset {DYNAMO_OPSET} (torchscript exporter failed: {first})"
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"ONNX export failed: {first}; dynamo exporter: {first_line(exc)}") from exc


def export_onnx(model: nn.Module, model_id: ModelId, example: torch.Tensor, cache: ExportCache) -> tuple[Path, bool, float, str]:
    """(path, reused, export seconds, exporter note) of the ONNX artifact for this model and shape."""
    import onnx

    name = model_id.name
    key = cache.key(
        artifact="onnx", model=name, weights=model_id.weights_hash, shape=tuple(example.shape[1:]),
        torch=torch.__version__, onnx=onnx.__version__, exporter=EXPORTERS,
    )
    folder = cache.entry("onnx", name, key)
    note = {"exporter": ""}

    def build(tmp: Path) -> None:
        two = torch.cat([example[:1]] * 2).float().cpu()  # batch 2, so the batch axis stays symbolic
        note["exporter"] = _export(model, two, tmp)
        onnx.checker.check_model(str(tmp))

    start = time.perf_counter()
    path, reused = cache.get_or_build(folder, "model.onnx", build, lambda: {"model": name, "exporter": note["exporter"]})
    if reused:
        note["exporter"] = json.loads((folder / "meta.json").read_text()).get("exporter", "")
    return path, reused, (0.0 if reused else time.perf_counter() - start), note["exporter"]
