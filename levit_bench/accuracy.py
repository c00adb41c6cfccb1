"""Top-1/top-5 of each export of a model on a local ImageNet-style folder (``levit-bench accuracy``).

Each runner is made exactly as a run makes it (``prepare.outcomes``: the model built once, the
backend's ``prepare``, the parity gate): a runner that fails parity is not evaluated, so an accuracy figure
always belongs to an export that a run would time.  Images are decoded once per model, with the
model's own eval transform (``data.eval_transform``), and every variant of that model sees the same
batches.  Batches are padded to the batch size (the last image repeated, its outputs dropped), so a
runtime compiled for one shape never sees another.  Besides top-1/top-5 against the folder's labels,
each record keeps ``agreement``: the share of images whose top-1 is the eager fp32 reference's, the
usual measure of what an fp16/bf16/int8 export changes.

An unreadable image among readable ones is skipped, named and counted in every record; a folder
with no readable image is a UserError.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import data
from .accuracy_record import AccuracyRecord, utc_now
from .backends import ExportCache
from .backends.base import Runner
from .errors import UserError, first_line
from .prepare import Outcome, Ready, Subject, outcomes
from .runstate import run_state
from .selection import Selection
from .spec import Settings, Status

#: skipped files named in a record (all of them are counted)
MAX_NAMED_SKIPS = 20
TOPK = 5


@dataclass
class AccuracyPlan:
    """What ``evaluate`` measures: every model × precision × backend of ``selection`` (one batch
    size) on ``images``."""

    selection: Selection
    images: data.LabelledImages
    limit: int | None = None

    @property
    def batch_size(self) -> int:
        return self.selection.batch_sizes[0]

    @property
    def settings(self) -> Settings:
        return self.selection.settings

    def total_images(self) -> int:
        return len(self.images.samples) * len(self.selection.models)


#: progress: (what is happening, images done since the last call)
Notify = Callable[[str, int], None]


@dataclass
class _Evaluated:
    """A runner being evaluated and its tallies."""

    record: AccuracyRecord
    runner: Runner | None
    predictions: list[torch.Tensor] = field(default_factory=list)
    correct1: int = 0
    correct5: int = 0
    agree: int = 0
    seconds: float = 0.0


def evaluate(plan: AccuracyPlan, notify: Notify | None = None,
             on_record: Callable[[AccuracyRecord], None] | None = None,
             predictions: dict[str, torch.Tensor] | None = None,
             show_warning: Callable[[str], None] | None = None) -> list[AccuracyRecord]:
    """One record per model × backend × precision, in plan order.  ``on_record`` sees each as it is
    finished; ``predictions`` (when given) receives each evaluated variant's top-1 per image (by
    record label), in the order of ``plan.images.samples`` with unreadable images left out."""
    sel = plan.selection
    cache = ExportCache(sel.cache_dir)
    state = _State(notify or (lambda _d, _n: None))
    out: list[AccuracyRecord] = []

    def on_step(model: str, backend: str, _bs: int) -> None:
        state.notify(f"preparing {model} · {backend}", 0)

    with run_state(sel.settings.threads, cache.runtime_dir("inductor"), show_warning):
        steps = outcomes(sel, cache, sel.settings.device, on_step)
        for name, group in itertools.groupby(steps, key=lambda step: step[1].identity.model):
            for record in _evaluate_model(plan, name, list(group), state, predictions):
                out.append(record)
                if on_record is not None:
                    on_record(record)
    return out


@dataclass
class _State:
    notify: Notify
    kept: list[int] | None = None  # positions of the readable images (known after the first model)
    skipped: list[str] = field(default_factory=list)
    fingerprint: str | None = None


def _record(plan: AccuracyPlan, outcome: Outcome) -> AccuracyRecord:
    """The record of one prepared step, not yet evaluated (``_finish`` fills the figures)."""
    status, reason = (Status.SKIPPED, "") if isinstance(outcome, Ready) else (outcome.status, outcome.reason)
    weights = plan.selection.weights
    return AccuracyRecord(outcome.identity, status, reason,
                          weights={"file": str(Path(weights).resolve()) if weights else None,
                                   "hash": outcome.identity.weights_hash},
                          parity=outcome.facts.parity, notes=list(outcome.facts.notes))


def _evaluate_model(plan: AccuracyPlan, name: str, steps: list[tuple[Subject | None, Outcome]], state: _State,
                    predictions: dict[str, torch.Tensor] | None) -> list[AccuracyRecord]:
    """Every prepared variant of one model fed the same batches; each runner closed after."""
    evals = [_Evaluated(_record(plan, o), o.runner if isinstance(o, Ready) else None) for _s, o in steps]
    subject = steps[0][0]
    try:
        if subject is None:  # the model could not be built: its records say why
            state.notify("", len(plan.images.samples))
            return [_finish(plan, state, ev, None) for ev in evals]
        _run_batches(plan, name, subject.reference, torch.device(plan.settings.device), evals, state)
        return [_finish(plan, state, ev, predictions) for ev in evals]
    finally:
        for ev in evals:
            if ev.runner is not None:
                ev.runner.close()


def _run_batches(plan: AccuracyPlan, name: str, reference: torch.nn.Module, device: torch.device,
                 evals: list[_Evaluated], state: _State) -> None:
    """Every batch of images through the reference and each live runner, tallying as it goes.
    The first model's pass also finds which images are readable (the same for every model)."""
    transform = data.eval_transform(name, plan.selection.img_size)
    samples = plan.images.samples
    first_pass = state.kept is None
    kept_all: list[int] = []
    live = [ev for ev in evals if ev.runner is not None]
    bs = plan.batch_size
    if not live and not first_pass:  # nothing to evaluate, and readability is known
        state.notify(f"evaluating {name}", len(samples))
        return
    for start in range(0, len(samples), bs):
        chunk = samples[start:start + bs]
        state.notify(f"evaluating {name}", 0)
        x, kept, skipped = data.load_readable([p for p, _ in chunk], transform)
        if first_pass:
            state.skipped += skipped
            kept_all += [start + i for i in kept]
        if x is not None and live:
            labels = torch.tensor([chunk[i][1] for i in kept])
            n = x.shape[0]
            padded = pad_batch(x, bs)
            with torch.inference_mode():
                ref_top1 = reference(padded.to(device)).float().cpu()[:n].argmax(1)
            for ev in live:
                if ev.runner is not None:
                    _tally(ev, padded, n, labels, ref_top1)
        state.notify(f"evaluating {name}", len(chunk))
    if first_pass:
        state.kept = kept_all
        if not kept_all:
            first = f"; first: {state.skipped[0]}" if state.skipped else ""
            raise UserError(f"none of the {len(samples)} images in {str(plan.images.root)!r} could be read{first}")
        state.fingerprint = data.files_fingerprint([samples[i][0] for i in kept_all])


def pad_batch(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``x`` padded to ``batch_size`` with its last image repeated (the runner's shape is fixed; the
    padding's outputs are dropped by the caller)."""
    n = x.shape[0]
    return torch.cat([x, x[-1:].expand(batch_size - n, *x.shape[1:])]) if n < batch_size else x


def correct_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """Top-1 and top-5 hits of ``logits`` (one row per labelled image) against ``labels``."""
    topk = logits.topk(min(TOPK, logits.shape[1]), dim=1).indices
    return int((logits.argmax(1) == labels).sum()), int((topk == labels[:, None]).any(1).sum())


def _tally(ev: _Evaluated, padded: torch.Tensor, n: int, labels: torch.Tensor, ref_top1: torch.Tensor) -> None:
    """One batch through one runner; a runtime error fails that variant (the others go on)."""
    try:
        start = time.perf_counter()
        logits = ev.runner(padded)
        ev.seconds += time.perf_counter() - start
        logits = logits.reshape(padded.shape[0], -1)[:n].float()
        if not torch.isfinite(logits).all():
            raise RuntimeError("logits have NaN or inf")
    except Exception as exc:  # noqa: BLE001
        ev.record.status, ev.record.reason = Status.FAILED, f"during evaluation: {first_line(exc)}"
        ev.runner.close()
        ev.runner = None
        return
    top1 = logits.argmax(1)
    c1, c5 = correct_counts(logits, labels)
    ev.correct1 += c1
    ev.correct5 += c5
    ev.agree += int((top1 == ref_top1).sum())
    ev.predictions.append(top1)


def _finish(plan: AccuracyPlan, state: _State, ev: _Evaluated,
            predictions: dict[str, torch.Tensor] | None) -> AccuracyRecord:
    """Fill the figures (an evaluated variant becomes ``ok``) and what was evaluated on."""
    rec = ev.record
    rec.measured_at = utc_now()
    images = len(state.kept or [])
    rec.data = {
        "root": str(Path(plan.images.root).resolve()), "fingerprint": state.fingerprint, "images": images,
        "found": plan.images.found, "limit": plan.limit, "skipped": len(state.skipped),
        "skipped_files": state.skipped[:MAX_NAMED_SKIPS],
        "transform": _jsonable(data.eval_config(rec.model, plan.selection.img_size)),
    }
    if ev.runner is not None and rec.status is not Status.FAILED and images:
        rec.status, rec.reason = Status.OK, ""
        rec.correct1, rec.correct5 = ev.correct1, ev.correct5
        rec.top1, rec.top5 = 100.0 * ev.correct1 / images, 100.0 * ev.correct5 / images
        rec.agreement = ev.agree / images
        rec.eval_s = ev.seconds
        if state.skipped:
            rec.notes.append(f"{len(state.skipped)} unreadable image(s) skipped")
        if predictions is not None:
            predictions[rec.label()] = torch.cat(ev.predictions)
    elif rec.status is Status.SKIPPED and not rec.reason:
        rec.status, rec.reason = Status.FAILED, "not evaluated"
    return rec


def _jsonable(cfg: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
