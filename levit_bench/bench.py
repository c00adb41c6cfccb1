"""A plan (models x backends x batch sizes, one Settings template) and running it, entry by entry.

For each model: build it, fuse it, keep the unfused eager fp32 model as the parity reference.  For
each backend and batch size: prepare a runner, check parity on the seeded batch that will be timed,
and only then measure.  A backend that cannot run is ``skipped``, one that fails to export or
breaks parity is ``failed``, and the run goes on.  ``on_entry`` sees every finished entry (the CLI
saves the results file after each, so an interrupted run keeps them).
"""
from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from . import zoo
from .backends import BACKENDS, BackendUnavailable, ExportCache, Settings
from .errors import UserError
from .harness import TimingOptions, apply_threads, measure, physical_cores
from .parity import compare_logits, parity_input
from .results import Entry
from .stats import summarize


@dataclass
class Plan:
    models: list[str]
    backends: list[str]
    batch_sizes: list[int]
    settings: Settings = field(default_factory=Settings)
    timing: TimingOptions = field(default_factory=TimingOptions)
    weights: str | None = None
    img_size: int | None = None
    cache_dir: str | None = None
    shrink_on_oom: bool = False  # the paper's GPU protocol: halve the batch until it fits

    @property
    def threads(self) -> int:
        return self.settings.threads or physical_cores()

    def steps(self) -> int:
        return len(self.models) * len(self.backends) * len(self.batch_sizes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(exc).lower()


@dataclass
class Event:
    """Progress notification (outside any timed region)."""

    kind: str  # model, step, entry
    model: str
    backend: str = ""
    batch_size: int = 0
    entry: Entry | None = None


def execute(plan: Plan, on_event: Callable[[Event], None] | None = None) -> list[Entry]:
    """Run every step of ``plan``; returns the entries in plan order."""
    notify = on_event or (lambda _e: None)
    cache = ExportCache(plan.cache_dir)
    threads = plan.threads
    apply_threads(threads)
    settings_base = replace(plan.settings, threads=threads)
    device = torch.device(settings_base.device)
    entries: list[Entry] = []

    for name in plan.models:
        notify(Event("model", name))
        try:
            reference = zoo.create_model(name, weights=plan.weights, img_size=plan.img_size)
            img_size = reference.levit_bench_img_size
            fused = zoo.fuse(reference)
            fused.levit_bench_name = name
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model that won't build fails its entries, not the run
            for backend in plan.backends:
                for bs in plan.batch_sizes:
                    e = Entry(name, backend, settings_base.device, settings_base.precision, bs, threads, "failed",
                              f"model build failed: {_first_line(exc)}")
                    entries.append(e)
                    notify(Event("entry", name, backend, bs, e))
            continue
        reference = reference.to(device)
        for backend_name in plan.backends:
            backend = BACKENDS[backend_name]
            for bs in plan.batch_sizes:
                while True:
                    settings = replace(settings_base, batch_size=bs)
                    notify(Event("step", name, backend_name, bs))
                    entry = _run_one(name, img_size, reference, fused, backend, settings, plan.timing, cache)
                    if not (plan.shrink_on_oom and entry.reason == "out of memory" and bs > 1):
                        break
                    bs //= 2
                    _free(device)
                entries.append(entry)
                notify(Event("entry", name, backend_name, bs, entry))
                _free(device)
        del reference, fused
        _free(device)
    return entries


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _run_one(name, img_size, reference, fused, backend, settings: Settings, timing: TimingOptions, cache) -> Entry:
    entry = Entry(name, backend.name, settings.device, settings.precision, settings.batch_size,
                  settings.threads or 1, "skipped", img_size=img_size,
                  options={"half_mode": settings.half_mode, "channels_last": settings.channels_last,
                           "compile_mode": settings.compile_mode, "cuda_graphs": settings.cuda_graphs,
                           "openvino_mode": settings.openvino_mode})
    reason = backend.unavailable_reason(settings)
    if reason:
        entry.reason = reason
        return entry
    x = parity_input(settings.batch_size, img_size)
    runner = None
    try:
        with torch.inference_mode():
            ref_logits = reference(x.to(reference_device(reference))).float().cpu()
        prepared = backend.prepare(fused, x, settings, cache)
        runner = prepared.runner
        entry.export_s, entry.export_reused = prepared.export_s, prepared.reused
        entry.artifact, entry.artifact_bytes = prepared.artifact, prepared.artifact_bytes
        entry.notes = [n for n in prepared.notes if n]
        parity = compare_logits(runner(x), ref_logits, settings.precision)
        entry.parity = parity.to_dict()
        if not parity.ok:
            entry.status, entry.reason = "failed", parity.reason
            return entry
        call = runner.bind(x)
        with torch.inference_mode():
            m = measure(call, timing, synchronize=runner.synchronize, cuda=settings.device == "cuda")
    except BackendUnavailable as exc:
        entry.reason = _first_line(exc)
        return entry
    except Exception as exc:  # noqa: BLE001 - export/runtime errors fail this entry only
        entry.status = "failed"
        entry.reason = "out of memory" if _is_oom(exc) else _first_line(exc)
        return entry
    finally:
        if runner is not None:
            runner.close()
    images_per_call = settings.batch_size * runner.batches_per_call
    s = summarize(m.samples_s, images_per_call)
    entry.status, entry.reason = "ok", ""
    entry.images_per_second = s.images_per_second
    entry.ci95 = list(s.ci95_ips)
    entry.iqr = s.iqr_ips
    entry.noisy = s.noisy
    entry.latency_ms = s.latency_ms
    entry.time_s = {"median": s.median_s, "iqr": s.iqr_s, "min": s.min_s}
    entry.samples_s = list(m.samples_s)
    entry.images_per_call = images_per_call
    entry.warmup_calls = m.warmup_calls
    entry.first_call_s = m.first_call_s
    entry.peak_rss_bytes = m.peak_rss_bytes
    entry.cuda_max_memory_bytes = m.cuda_max_memory_bytes
    if s.noisy:
        entry.notes.append(f"noisy: IQR is {s.rel_iqr:.0%} of the median")
    return entry


def reference_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
