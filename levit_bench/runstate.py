"""Process-wide state a run needs, set on entry and restored on exit.

A run changes things that outlive it: torch's intra-op threads, where inductor keeps compiled
kernels (an environment variable it reads lazily), dynamo's fallback policy, and how warnings are
shown.  :func:`run_state` owns all of them, so ``execute`` (and anything calling it: the CLI, tests,
a notebook) leaves the process as it found it.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
RECOMPILE_LIMIT = 64


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n``, restored on exit: the one place torch's thread count is
    changed (``run_state`` uses it, and so does anything timed outside a run, like the peak)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _dynamo_fails_on_fallback() -> Iterator[None]:
    """Make dynamo raise, not quietly run eager, when it hits its recompile limit.

    The limit counts per code object, so models of one family share it: in one process the ninth
    LeViT compile used to fall back to eager and be timed as "torch-compile" (H100 log,
    docs/performance.md).
    """
    import torch._dynamo

    config = torch._dynamo.config
    if not hasattr(config, "fail_on_recompile_limit_hit"):  # torch < 2.6
        yield
        return
    # a group keeps every compiled model alive at once: each is a recompile of the same forward code,
    # so the per-code limit (8) must cover a group's models; a fallback still fails the entry
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    old = config.fail_on_recompile_limit_hit, getattr(config, limit)
    config.fail_on_recompile_limit_hit = True
    setattr(config, limit, max(old[1], RECOMPILE_LIMIT))
    try:
        yield
    finally:
        config.fail_on_recompile_limit_hit = old[0]
        setattr(config, limit, old[1])


@contextlib.contextmanager
def _warnings_to(show: Callable[[str], None] | None) -> Iterator[None]:
    if show is None:
        yield
        return
    old = warnings.showwarning
    warnings.showwarning = lambda message, *_a, **_k: show(str(message))
    try:
        yield
    finally:
        warnings.showwarning = old


@contextlib.contextmanager
def preserved_environment() -> Iterator[None]:
    """The environment as it was on entry, restored on exit.  torch sets variables of its own on
    first import of some modules (``TORCHINDUCTOR_CACHE_DIR`` when ``torch._dynamo`` loads), which
    can happen anywhere in a command; ``cli.main`` uses this so a caller's process is left as found."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k not in saved]:
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def run_state(threads: int, inductor_dir: str | os.PathLike,
              show_warning: Callable[[str], None] | None = None) -> Iterator[None]:
    """Threads for torch, inductor's cache in ``inductor_dir`` (the export cache's
    ``runtime_dir("inductor")``), no silent eager fallback in dynamo,
    warnings through ``show_warning`` (when given); all restored on exit."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(threads))
        stack.enter_context(_env(INDUCTOR_CACHE_ENV, str(inductor_dir)))
        stack.enter_context(_dynamo_fails_on_fallback())
        stack.enter_context(_warnings_to(show_warning))
        yield
