"""The one preparation path: per planned step, a runner that may be measured, or the reason there
is none.

A step is prepared as the backend's ``prepare``, the check that it computes in the precision asked
for, and the parity gate against the eager fp32 reference on the seeded batch.  Runs (``bench.py``),
``accuracy`` and ``profile`` all consume :func:`outcomes` (or, where a step is retried at another
batch size, :meth:`Subject.prepare`), so nothing is timed, evaluated or profiled that would not
pass the same checks, and each outcome is a typed value, never an out-parameter.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from . import zoo
from .backends import BACKENDS, ExportCache
from .backends.base import Runner
from .errors import UserError, first_line, is_out_of_memory
from .parity import compare_logits, parity_input
from .entry_parts import ExportFacts
from .spec import Identity, ModelId, Settings, Status


class Plan(Protocol):
    """What preparation needs of a command's selection (``cli.selection.Selection`` has it)."""

    models: tuple[str, ...]
    weights: str | None
    img_size: int | None

    def steps(self) -> Iterable[tuple[str, Settings, str, int]]: ...


@dataclass
class Ready:
    """A runner that passed parity on ``x`` (the seeded batch a run times), with its facts."""

    identity: Identity
    runner: Runner
    x: torch.Tensor
    facts: ExportFacts
    first_call_s: float | None = None  # the parity check's call: the runner's first

    status = Status.OK


@dataclass
class NotReady:
    """A step that yields no runner: ``skipped`` (cannot run here) or ``failed`` (build, export,
    parity, runtime), with the reason; ``oom`` when memory ran out (a run may retry smaller)."""

    identity: Identity
    status: Status
    reason: str
    facts: ExportFacts = field(default_factory=ExportFacts)
    oom: bool = False


Outcome = Ready | NotReady

class Subject:
    """One model built once for every step of it: the eager fp32 reference (on the device), the
    fused copy runtimes get, and the reference's logits per batch size."""

    def __init__(self, built: zoo.Subject, device: str):
        self.device = device
        self.model_id: ModelId = built.model_id
        self.fused = built.fused
        self.reference = built.reference.to(device)
        self._logits: dict[int, torch.Tensor] = {}

    def reference_logits(self, batch_size: int) -> torch.Tensor:
        if batch_size not in self._logits:
            x = parity_input(batch_size, self.model_id.img_size)
            with torch.inference_mode():
                self._logits[batch_size] = self.reference(x.to(_device_of(self.reference))).float().cpu()
        return self._logits[batch_size]

    def prepare(self, backend_name: str, settings: Settings, batch_size: int, cache: ExportCache) -> Outcome:
        """One step: a :class:`Ready` runner, or :class:`NotReady` with the reason.  Export and runtime
        errors fail the step only; Ctrl-C and UserErrors propagate (a runner made is closed first)."""
        backend = BACKENDS[backend_name]
        identity = Identity.of(self.model_id, backend_name, settings, batch_size)
        reason = backend.unavailable_reason(settings)
        if reason:  # before the parity batch is drawn (large at the GPU protocol's batch sizes)
            return NotReady(identity, Status.SKIPPED, reason)
        facts = ExportFacts()
        runner: Runner | None = None
        try:
            x = parity_input(batch_size, self.model_id.img_size)
            ref = self.reference_logits(batch_size)
            # an artifact from the cache that does not load is discarded and built again (once)
            prepared, rebuilt = cache.with_rebuild(lambda: backend.prepare(self.fused, self.model_id, x, settings,
                                                                           cache))
            runner = prepared.runner
            facts = ExportFacts(prepared.export_s, prepared.reused if prepared.artifact else None, prepared.artifact,
                                prepared.artifact_bytes, notes=[n for n in prepared.notes if n] + ([rebuilt] if rebuilt else []))
            executed = prepared.executed_precision
            if executed and executed != settings.precision:
                runner.close()
                return NotReady(identity, Status.SKIPPED,
                                f"{backend.name} computes in {executed} here, not {settings.precision} as asked "
                                "(no such units on this CPU): not measured, so no figure is labelled wrongly", facts)
            start = time.perf_counter()
            logits = runner(x)  # the runner's first call: it doubles as the first call of the warm-up
            first_call_s = time.perf_counter() - start
            parity = compare_logits(logits, ref, settings.precision)
            facts.parity = parity.to_dict()
            if not parity.ok:
                runner.close()
                if prepared.reused and prepared.artifact:
                    cache.discard(Path(prepared.artifact))  # rebuilt next time, not failed forever
                    facts.notes.append("the cached artifact failed parity and was removed")
                return NotReady(identity, Status.FAILED, parity.reason, facts)
        except (KeyboardInterrupt, UserError):
            if runner is not None:
                runner.close()
            raise
        except Exception as exc:  # noqa: BLE001 - export/runtime errors fail this step only
            if runner is not None:
                runner.close()
            if is_out_of_memory(exc):
                return NotReady(identity, Status.FAILED, "out of memory", facts, oom=True)
            return NotReady(identity, Status.FAILED, first_line(exc), facts)
        return Ready(identity, runner, x, facts, first_call_s)


def build(name: str, plan: Plan, device: str) -> Subject | str:
    """The model's :class:`Subject`, or why it could not be built (the step fails, not the run;
    a UserError, e.g. weights that do not fit, stops the command)."""
    try:
        built = zoo.subject(name, weights=plan.weights, img_size=plan.img_size)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model that won't build fails its steps, not the run
        return f"model build failed: {first_line(exc)}"
    return Subject(built, device)


def unbuilt(name: str, plan: Plan, settings: Settings, backend: str, batch_size: int) -> Identity:
    """The identity of a step whose model could not be built (no weights hash)."""
    return Identity.of(ModelId(name, zoo.input_size(name, plan.img_size), None), backend, settings, batch_size)


def outcomes(plan: Plan, cache: ExportCache, device: str,
             on_step: Callable[[str, str, int], None] | None = None) -> Iterator[tuple[Subject | None, Outcome]]:
    """Every step of ``plan`` prepared in plan order, with the model it belongs to (None where it
    could not be built); ``on_step(model, backend, batch size)`` is told before each is prepared.
    The consumer owns each Ready runner and closes it."""
    current: tuple[str, Subject | str] | None = None
    for name, settings, backend, bs in plan.steps():
        if on_step is not None:
            on_step(name, backend, bs)
        if current is None or current[0] != name:
            current = None  # the last model is freed once its consumer lets it go too
            free(device)
            current = (name, build(name, plan, device))
        subject = current[1]
        if isinstance(subject, str):
            yield None, NotReady(unbuilt(name, plan, settings, backend, bs), Status.FAILED, subject)
        else:
            yield subject, subject.prepare(backend, settings, bs, cache)


def free(device: str | torch.device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
