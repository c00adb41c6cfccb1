"""Shared fixtures: randomized weights that expose wiring errors, small seeded inputs, one export
cache for the whole test run, a clock that moves only when told."""
from __future__ import annotations

import gc
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

# OpenMP threads that sleep at a barrier instead of spinning: on a loaded machine a spinning thread
# waits for a sibling that is not running, and a 2-thread levit_128s forward took 1.9 s instead of
# 70 ms (measured on the 2-core VM beside other test runs).  Read when torch loads libgomp, so set
# before the first ``import torch``; inherited by every command the tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LEVIT_BENCH_NO_PROGRESS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with the most ``slow`` tests first, each module's tests kept together and in order:
    pytest-xdist hands tests out in this order, so the long ones start early and the last seconds
    of the run are short tests that fill both workers, not one long test that leaves one idle."""
    slow: dict[str, int] = {}
    for item in items:
        slow[item.module.__name__] = slow.get(item.module.__name__, 0) + bool(item.get_closest_marker("slow"))
    first_seen = {name: i for i, name in enumerate(dict.fromkeys(item.module.__name__ for item in items))}
    items.sort(key=lambda item: (-slow[item.module.__name__], first_seen[item.module.__name__]))


def pytest_collection_finish(session) -> None:
    """Move what collection imported and built (torch, timm, the runtimes: millions of objects) out
    of the garbage collector's sight once, so the collections made while tests run (each run's
    ``gc.collect``, Python's own) do not walk it again and again."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """The same for what the tests built, so the interpreter's exit does not walk it either (5 s of
    the fast tier's wall time on the 2-core VM)."""
    gc.freeze()


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN random statistics/affine parameters and every attention bias random values.

    Default init zeroes some BN weights and all attention biases, which hides wiring errors.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or "attention_biases" in name:
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            elif ".bn." in name or name.startswith("bn") or "bn1" in name or "bn2" in name or "bn3" in name:
                if name.endswith("weight"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name.endswith("bias"):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model


def centered(logits: torch.Tensor) -> torch.Tensor:
    """The input-dependent part of a batch of logits (the common component removed)."""
    return logits - logits.mean(0, keepdim=True)


def centered_rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    c_ref = centered(ref)
    return ((centered(out) - c_ref).abs().max() / c_ref.abs().max()).item()


def seeded_images() -> torch.Tensor:
    """Four different seeded float64 images at 224 (the same ones on every call)."""
    return torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture
def images() -> torch.Tensor:
    return seeded_images()


@pytest.fixture(scope="session")
def export_cache(tmp_path_factory) -> Path:
    """One export cache for the whole test run, filled lazily: levit_128s's ONNX export, its
    TorchScript traces, int8 artifacts, OpenVINO's compiled blobs and the GEMM peak are built by the
    first test that needs them and found by the others.  The cache key holds the model, weights hash,
    shape, precision and library versions, so what a test reuses is what it would have built.  A
    test that must see a fresh export, or damages an artifact, uses a cache of its own.

    Under pytest-xdist the workers share it (a folder beside theirs, in the run's own temporary
    folder): the cache is built for concurrent processes (each build in its own locked folder,
    checksummed artifacts), so a model exported by one worker is not exported again by the other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "export-cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("export-cache")


@pytest.fixture
def cache_args(export_cache) -> list[str]:
    """``--cache-dir`` of the shared export cache, for the command line."""
    return ["--cache-dir", str(export_cache)]


class FakeClock:
    """``time.perf_counter`` that moves only when a test moves it: timing logic is checked on exact
    durations, whatever the machine's speed or load.  Starts at 0 and moves by powers of two in the
    tests, so the arithmetic is exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    return clock



ROUND_DONE = re.compile(r"timing: round ([1-9][0-9]*) of [0-9]+")  # the progress display, a round complete
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
GUARD_S = 900  # only so that a hung child cannot hang the suite; no wait depends on the machine's speed


def signal_after_a_round(cmd: list[str], sig: int, armed: Callable[[], bool] | None = None) -> tuple[int, str]:
    """Run ``cmd`` (a levit-bench command line) in a child process, send it ``sig`` once its progress
    display (forced on, as on a terminal) shows a completed round — a round completed after
    ``armed()`` first held, where given (polled: e.g. "the results file holds a finished entry") — and
    return its exit code and stderr.

    An event, not a guess at how long rounds take on this machine; the deadlines only guard against a
    hang.  A child, not this process: a signal sent to pytest itself while the runtimes' thread pools
    ran crashed the test process (exit 139) on a loaded CI runner."""
    env = {**os.environ, "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TERM": "xterm", "COLUMNS": "200"}
    env.pop("LEVIT_BENCH_NO_PROGRESS", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    text = {"out": "", "err": "", "after": ""}  # "after": what both streams showed once armed
    ready, round_done = threading.Event(), threading.Event()
    if armed is None:
        ready.set()

    def read(name: str, stream) -> None:  # noqa: ANN001 - a pipe
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            piece = ANSI.sub("", chunk.decode(errors="replace"))
            text[name] += piece
            if ready.is_set():
                text["after"] += piece
                if ROUND_DONE.search(text["after"][-8192:]):
                    round_done.set()
        round_done.set()  # the stream ended: the run is over (told apart below)

    def watch() -> None:
        while proc.poll() is None and not ready.is_set():
            if armed():
                ready.set()
            time.sleep(0.05)

    threads = [threading.Thread(target=read, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    if armed is not None:
        threads.append(threading.Thread(target=watch, daemon=True))
    for t in threads:
        t.start()
    try:
        assert round_done.wait(GUARD_S), f"no round completed within {GUARD_S} s: {text}"
        if proc.poll() is not None or not ROUND_DONE.search(text["after"]):
            pytest.fail(f"the run ended (exit {proc.wait()}) before a round was shown complete: {text}")
        proc.send_signal(sig)
        proc.wait(timeout=GUARD_S)
        for t in threads:
            t.join(GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, text["err"]


# ---------------------------------------------------------------------------------------------
# issue 23: compare and history append their Markdown to $GITHUB_STEP_SUMMARY when it is set; the
# suite's own job summary (the suite run in GitHub Actions) must not collect the tests' tables


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
