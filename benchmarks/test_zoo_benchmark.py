"""The zoo × CPU backends through pytest-benchmark, for those whose CI already gates with it.

Same runner objects as the CLI (zoo.create_model, zoo.fuse, BACKENDS[name].prepare, runner.bind);
each case checks parity against the eager fp32 model before it is timed and is skipped where its
backend cannot run.  Not collected by ``python -m pytest`` (testpaths is ``tests``); run::

    pytest benchmarks -n 0 --benchmark-autosave
    pytest benchmarks -n 0 --benchmark-compare --benchmark-compare-fail=median:10%

Environment: LEVIT_BENCH_MODELS (comma list, default levit_128s,levit_256,efficientnet_b0,
deit_tiny_distilled), LEVIT_BENCH_BACKENDS (default: this machine's CPU set), LEVIT_BENCH_BATCH
(comma list, default 16), LEVIT_BENCH_THREADS (default: physical cores), LEVIT_BENCH_ROUNDS
(default 20), LEVIT_BENCH_WARMUP_ROUNDS (default 3), LEVIT_BENCH_CACHE (export cache folder).

That gate compares one statistic against a fixed threshold; ``levit-bench compare`` tests the raw
samples instead (docs/reports-and-gate.md).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import pytest
import torch

from levit_bench import zoo
from levit_bench.backends import BACKENDS, ExportCache, Settings, default_backends
from levit_bench.models.weights import weights_hash
from levit_bench.parity import compare_logits, parity_input
from levit_bench.runstate import run_state
from levit_bench.spec import ModelId
from levit_bench.sysinfo import physical_cores

DEFAULT_MODELS = "levit_128s,levit_256,efficientnet_b0,deit_tiny_distilled"


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    value = int(text)
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return value


MODELS = _names(os.environ.get("LEVIT_BENCH_MODELS", DEFAULT_MODELS))
BACKEND_NAMES = _names(os.environ.get("LEVIT_BENCH_BACKENDS", "")) or default_backends("cpu")
BATCHES = [int(b) for b in _names(os.environ.get("LEVIT_BENCH_BATCH", "16"))]
THREADS = _int_env("LEVIT_BENCH_THREADS", physical_cores())
ROUNDS = _int_env("LEVIT_BENCH_ROUNDS", 20)
WARMUP_ROUNDS = int(os.environ.get("LEVIT_BENCH_WARMUP_ROUNDS", "3"))


@pytest.fixture(scope="module")
def cache() -> Iterator[ExportCache]:
    cache = ExportCache(os.environ.get("LEVIT_BENCH_CACHE") or None)
    with run_state(THREADS, cache.root):
        yield cache


@functools.lru_cache(maxsize=1)  # cases run model by model: keep only the current one
def built(name: str) -> tuple[torch.nn.Module, torch.nn.Module, ModelId]:
    """The eager fp32 reference, its fused copy (what backends receive) and the fused copy's identity."""
    img_size = zoo.input_size(name)
    reference = zoo.create_model(name)
    fused = zoo.fuse(reference, img_size=img_size)
    return reference, fused, ModelId(name, img_size, weights_hash(fused))


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("model_name", MODELS)
def test_zoo(benchmark, cache, model_name: str, backend_name: str, batch: int) -> None:
    settings = Settings(device="cpu", precision="fp32", threads=THREADS)
    backend = BACKENDS[backend_name]
    reason = backend.unavailable_reason(settings)
    if reason is not None:
        pytest.skip(reason)
    reference, fused, model_id = built(model_name)
    x = parity_input(batch, model_id.img_size)
    with torch.inference_mode():
        ref_logits = reference(x).float()
    runner = backend.prepare(fused, model_id, x, settings, cache).runner
    try:
        parity = compare_logits(runner(x), ref_logits, settings.precision)
        assert parity.ok, f"{model_name} on {backend_name}: {parity.reason}"  # never time a wrong answer
        call = runner.bind(x)

        def one_batch() -> None:
            call()
            runner.synchronize()

        images_per_call = batch * runner.batches_per_call
        benchmark.group = f"{model_name} batch {batch}"
        benchmark.extra_info.update(model=model_name, backend=backend_name, batch_size=batch, threads=THREADS,
                                    images_per_call=images_per_call)
        with torch.inference_mode():
            benchmark.pedantic(one_batch, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
        if benchmark.stats is not None:  # None under --benchmark-disable
            benchmark.extra_info["images_per_second"] = images_per_call / benchmark.stats.stats.median
    finally:
        runner.close()
