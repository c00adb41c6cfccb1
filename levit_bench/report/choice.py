"""Which entries a cross-model figure uses: the setting (the paper's protocol when measured) and
the fastest entry there."""
from __future__ import annotations

from collections.abc import Iterable

from .. import paper
from ..spec import Conditions
from .merge import Sourced


def is_paper_setting(setting: Conditions) -> bool:
    """The paper's CPU protocol (fp32, 1 thread, batch 16)."""
    return setting.device == "cpu" and paper.is_cpu_protocol(setting.precision, setting.threads, setting.batch_size)


def setting_words(setting: Conditions) -> str:
    return setting.words() + (" (the paper's CPU protocol)" if is_paper_setting(setting) else "")


def choose_setting(coverage: dict[Conditions, int]) -> Conditions | None:
    """The paper's CPU protocol when measured; else the setting covering most models, then the
    largest batch, then the fewest threads (closest to the paper's one), then fp32."""
    if not coverage:
        return None
    for setting in coverage:
        if is_paper_setting(setting):
            return setting
    return max(coverage, key=lambda s: (coverage[s], s.batch_size, -s.threads, s.precision == "fp32"))


def best_entry(entries: Iterable[Sourced]) -> Sourced | None:
    ok = [s for s in entries if s.entry.ok]
    return max(ok, key=lambda s: s.entry.timing.images_per_second) if ok else None
