"""What a command measures, once resolved: the one plan every measuring command follows.

``cli/front.py`` builds it from the flags (every value checked); ``prepare.outcomes`` walks its
steps; ``bench``, ``accuracy`` and ``profile`` consume those.  No command-line types here.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from .spec import Settings


@dataclass(frozen=True)
class Selection:
    """What a command measures, every value checked: models × precisions × backends × batch sizes
    at one device, thread count and set of runtime options."""

    models: tuple[str, ...]
    backends: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...]
    settings: Settings  # its precision is the first of ``precisions``
    weights: str | None = None
    img_size: int | None = None
    cache_dir: str | None = None
    paper: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: a part of the product (a plan's ``exclude`` rules, a shard, what a resumed run still lacks):
    #: the (model, precision, backend, batch size) steps to take, in plan order; None: all of them
    only: frozenset[tuple[str, str, str, int]] | None = None

    def settings_list(self) -> list[Settings]:
        """``settings`` at each precision, in order."""
        return [replace(self.settings, precision=p) for p in self.precisions]

    def steps(self) -> Iterator[tuple[str, Settings, str, int]]:
        """(model, settings, backend, batch size) in the one plan order every command follows."""
        for model in self.models:
            for settings in self.settings_list():
                for backend in self.backends:
                    for bs in self.batch_sizes:
                        if self.only is None or (model, settings.precision, backend, bs) in self.only:
                            yield model, settings, backend, bs

    def count(self) -> int:
        if self.only is not None:
            return sum(1 for _ in self.steps())
        return len(self.models) * len(self.precisions) * len(self.backends) * len(self.batch_sizes)

    def restricted(self, steps: Iterable[tuple[str, str, str, int]]) -> Selection:
        """This selection limited to ``steps`` ((model, precision, backend, batch size); within ``only``
        already set), still walked in plan order."""
        wanted = frozenset(steps)
        return replace(self, only=wanted if self.only is None else wanted & self.only)
