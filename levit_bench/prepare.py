"""Making a runner that may be measured: the backend's prepare, the check that it computes in the
precision asked for, and the parity gate against the eager fp32 reference.

Runs (``bench.py``), ``accuracy`` and ``profile`` all go through :func:`prepare_runner`, so nothing
is timed, evaluated or profiled that would not pass the same checks.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .backends import ExportCache
from .backends.base import Backend, Runner
from .parity import compare_logits
from .results import Entry
from .spec import ModelId, Settings, Status


def prepare_runner(entry: Entry, model_id: ModelId, reference: nn.Module, fused: nn.Module, backend: Backend,
                   settings: Settings, x: torch.Tensor, cache: ExportCache,
                   reference_logits: dict[int, torch.Tensor]) -> Runner | None:
    """The runner ``backend`` makes of ``fused`` if it passed parity on ``x`` against the eager fp32
    ``reference``; else None, and ``entry`` says why (skipped: cannot run here; failed: parity).

    Fills ``entry``'s export fields, notes and parity figures.  Shared by runs and ``accuracy``, so
    nothing is evaluated that would not have been timed.  Exceptions propagate (a runner it made is
    closed first).  ``reference_logits`` caches the reference's logits per batch size."""
    reason = backend.unavailable_reason(settings)
    if reason:
        entry.reason = reason
        return None
    batch_size = x.shape[0]
    if batch_size not in reference_logits:
        with torch.inference_mode():
            reference_logits[batch_size] = reference(x.to(_device_of(reference))).float().cpu()
    ref_logits = reference_logits[batch_size]
    # an artifact from the cache that does not load is discarded and built again (once)
    prepared, rebuilt = cache.with_rebuild(lambda: backend.prepare(fused, model_id, x, settings, cache))
    runner = prepared.runner
    try:
        entry.export_s = prepared.export_s
        entry.export_reused = prepared.reused if prepared.artifact else None  # None: nothing is exported
        entry.artifact, entry.artifact_bytes = prepared.artifact, prepared.artifact_bytes
        entry.notes = [n for n in prepared.notes if n] + ([rebuilt] if rebuilt else [])
        executed = prepared.executed_precision
        if executed and executed != settings.precision:
            entry.reason = (f"{backend.name} computes in {executed} here, not {settings.precision} as asked "
                            "(no such units on this CPU): not measured, so no figure is labelled wrongly")
            runner.close()
            return None
        parity = compare_logits(runner(x), ref_logits, settings.precision)
    except BaseException:
        runner.close()
        raise
    entry.parity = parity.to_dict()
    if not parity.ok:
        entry.status, entry.reason = Status.FAILED, parity.reason
        if prepared.reused and prepared.artifact:
            cache.discard(Path(prepared.artifact))  # rebuilt next time, not failed forever
            entry.notes.append("the cached artifact failed parity and was removed")
        runner.close()
        return None
    return runner


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
