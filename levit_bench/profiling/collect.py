"""Profile models × backends: prepare each as a run does, then time unprofiled and profiled blocks
in interleaved rounds (``schedule.run_rounds``, as a run's entries and the peak are timed).

Preparation is a run's: ``prepare.outcomes`` over the command's ``Selection`` (the model built
once, the backend's ``prepare``, the same refusals, parity against eager fp32 on the seeded batch;
a profiled twin session or compiled model is checked too), then warm-up.  Then, per round, one block of the
run's own call and one block under the profiler, in the schedule's seeded random order: the profiled
blocks give the op times, and both give the profiler's overhead on this machine, now.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..backends import BACKENDS, ExportCache
from ..backends.base import Runner
from ..errors import UserError, first_line
from ..harness import TimingOptions
from ..parity import compare_logits
from ..prepare import NotReady, Outcome, Subject, outcomes
from ..runstate import run_state
from ..schedule import Schedule, Timed, run_rounds, warm
from ..selection import Selection
from ..spec import Settings
from .probe import Probe, ProfileFailed
from .record import Profile
from .torch_profile import TorchProbe, preparing

#: the backends whose runtime has a profiler this package reads
PROFILERS = ("torch", "torch-compile", "torchscript", "onnxruntime", "openvino")


@dataclass(frozen=True)
class ProfileOptions:
    """How much to profile: at least ``calls`` profiled calls and ``min_time_s`` profiled seconds,
    spread over ``rounds`` rounds (each also times a block of unprofiled calls to the same totals:
    the overhead is paired by round, and its interval needs a few of them)."""

    calls: int = 10
    min_time_s: float = 1.0
    rounds: int = 5
    warmup_s: float = 0.5


def cannot_profile(backend: str, settings: Settings) -> str | None:
    """One line saying why ``backend`` cannot be profiled with ``settings`` here, or None."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})"
    if backend not in PROFILERS:
        return f"{backend} has no profiler levit-bench reads"
    if backend == "openvino" and settings.options.openvino_mode != "sync":
        from .openvino_profile import ASYNC_REFUSAL

        return ASYNC_REFUSAL
    if settings.device != "cpu":
        return (f"profiling on {settings.device} is not supported: the categories are read from CPU "
                "profilers (torch.profiler CPU time, ONNX Runtime's CPU trace, OpenVINO's CPU counters)")
    return BACKENDS[backend].unavailable_reason(settings)


def profile_entries(selection: Selection, *, options: ProfileOptions = ProfileOptions(),
                    on_entry: Callable[[str, str], None] | None = None,
                    show_warning: Callable[[str], None] | None = None) -> list[Profile]:
    """One :class:`Profile` per step of ``selection`` (model × backend at its one precision and
    batch size), in plan order (a failed one says why).

    Raises :class:`UserError` before anything runs when a backend cannot be profiled here.
    ``on_entry(model, backend)`` is told when an entry starts (progress)."""
    settings = selection.settings
    for backend in selection.backends:
        reason = cannot_profile(backend, settings)
        if reason:
            raise UserError(f"cannot profile {backend}: {reason}")
    cache = ExportCache(selection.cache_dir)
    out: list[Profile] = []

    def on_step(model: str, backend: str, _bs: int) -> None:
        if on_entry is not None:
            on_entry(model, backend)

    with run_state(settings.threads, cache.runtime_dir("inductor"), show_warning), preparing(selection.backends):
        for subject, outcome in outcomes(selection, cache, settings.device, on_step):
            out.append(_profile_one(subject, outcome, options))
    return out


def _profile_one(subject: Subject | None, outcome: Outcome, options: ProfileOptions) -> Profile:
    profile = Profile(outcome.identity)
    if isinstance(outcome, NotReady):
        return _failed(profile, outcome.reason)
    backend, runner, x, settings = BACKENDS[outcome.identity.backend], outcome.runner, outcome.x, outcome.identity.settings
    probe: Probe | None = None
    try:
        unprofiled = runner.bind(x)
        probe = make_probe(backend.name, runner, outcome.facts.artifact, x, settings, unprofiled)
        if probe.twin:
            parity = compare_logits(probe.logits(x), subject.reference_logits(x.shape[0]), settings.precision)
            if not parity.ok:
                return _failed(profile, f"profiled twin: {parity.reason}")
        profile.profiler, profile.notes = probe.profiler, list(outcome.facts.notes)
        with torch.inference_mode():
            plain, profiled = _interleaved(unprofiled, probe, options)
        profile.ops = probe.finish()
        profile.notes += probe.notes
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:  # noqa: BLE001 - an export, runtime or profiler failure fails this entry only
        return _failed(profile, first_line(exc))
    finally:
        if probe is not None:
            probe.close()
        runner.close()
        backend.end_group()
    profile.unprofiled_rounds, profile.profiled_rounds = plain, profiled
    return profile


def _interleaved(unprofiled: Callable[[], object], probe: Probe,
                 options: ProfileOptions) -> tuple[list[list[float]], list[list[float]]]:
    """Warm both up, then time them as two entries of one group in ``options.rounds`` seeded rounds
    (``schedule.run_rounds``): per round one unprofiled block and one profiled block, each sized
    from its own warm-up to reach ``calls`` and ``min_time_s`` over the rounds.  Returns the
    per-call seconds of each, by round (a call or the profiler failing is a ProfileFailed)."""
    timing = TimingOptions(warmup_s=options.warmup_s, min_time_s=options.min_time_s, min_calls=options.calls,
                           rewarm_s=None if probe.rewarms else 0.0)  # a probe that cannot re-warm: neither is
    plain = Timed("unprofiled", unprofiled, _nothing, False)
    profiled = Timed("profiled", probe.call, _nothing, False, block=probe.profiled_block, rewarm=probe.rewarm)
    warm(plain, timing)
    profiled.warm = probe.warm(timing) or plain.warm  # None: the probe profiles the run's own call
    # the untimed warm-up round runs untimed calls of both arms: not for a probe that cannot take any
    run_rounds([plain, profiled], timing, Schedule(rounds=options.rounds, seed=0, warmup_round=probe.rewarms))
    for item in (plain, profiled):
        if item.error is not None:
            raise ProfileFailed(item.error)
    return _by_round(plain), _by_round(profiled)


def _by_round(item: Timed) -> list[list[float]]:
    return [[float(s) for s in r] for r in item.round_samples()]


def _nothing() -> None:
    return None


def make_probe(backend: str, runner: Runner, artifact: str | None, x: torch.Tensor, settings: Settings,
               unprofiled: Callable[[], object]) -> Probe:
    """The probe of ``backend``'s profiler around the runner a run would time (and its artifact)."""
    if backend in ("onnxruntime", "openvino") and not artifact:
        raise ProfileFailed(f"{backend} prepared no artifact to open a profiled twin of")
    if backend == "onnxruntime":
        from .ort_profile import OrtProbe

        return OrtProbe(artifact, settings, x)
    if backend == "openvino":
        from .openvino_profile import OpenVinoProbe

        return OpenVinoProbe(runner.compiled, artifact, x, settings)
    return TorchProbe(unprofiled, backend, getattr(runner, "module", None))


def _failed(profile: Profile, reason: str) -> Profile:
    profile.status, profile.reason = "failed", reason
    return profile
