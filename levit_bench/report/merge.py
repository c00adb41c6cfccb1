"""Results files from many runs and machines, merged: one Machine per system, the newest
successful entry per EntryKey, and every replaced entry remembered (nothing dropped silently)."""
from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import zoo
from ..errors import UserError
from ..results import Entry, RunRecord, load
from ..spec import EntryKey, Status


@dataclass(eq=False)
class Sourced:
    """An entry with the results file it came from."""

    entry: Entry
    record: RunRecord

    @property
    def file(self) -> str:
        return self.record.source or "(unsaved results)"


@dataclass(eq=False)
class Machine:
    """Every results file recorded on one machine, merged."""

    title: str
    system: dict
    records: list[RunRecord] = field(default_factory=list)
    entries: list[Sourced] = field(default_factory=list)  # one per key: the newest successful one
    superseded: list[tuple[Sourced, Sourced]] = field(default_factory=list)  # (replaced, by)

    def ok(self) -> list[Sourced]:
        return [s for s in self.entries if s.entry.ok]

    def devices(self) -> list[str]:
        return sorted({s.entry.device for s in self.entries})

    @property
    def emulated(self) -> str | None:
        """The emulator the files were measured under (``qemu-user``), or None: real hardware.
        Timings under emulation are not speed, so no figure of speed is built from them."""
        return self.system.get("emulated")


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for the ``*.json`` files in it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise UserError(f"{p} is a folder with no results files (*.json) in it")
            out += found
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def load_results(paths: Iterable[str | os.PathLike]) -> list[RunRecord]:
    """Load every results file (UserError on the first unreadable one)."""
    paths = expand_paths(paths)
    if not paths:
        raise UserError("no results files given")
    return [load(p) for p in paths]


def machine_key(system: dict) -> tuple:
    """What identifies a machine across runs (the OS string changes with kernel updates, so not it)."""
    gpu = (system.get("gpu") or {}).get("name")
    return (system.get("hostname"), system.get("cpu"), system.get("physical_cores"), system.get("memory_bytes"), gpu,
            system.get("arch"), system.get("emulated"))


def machine_title(system: dict) -> str:
    gpu = (system.get("gpu") or {}).get("name")
    host = system.get("hostname") or "unknown host"
    return f"{host}: {system.get('cpu', 'unknown CPU')}" + (f" + {gpu}" if gpu else "")


def group_by_machine(records: Sequence[RunRecord]) -> list[Machine]:
    """One Machine per distinct system; within it, files are merged oldest first."""
    machines: dict[tuple, Machine] = {}
    for rec in sorted(records, key=lambda r: r.created):
        m = machines.setdefault(machine_key(rec.system), Machine(machine_title(rec.system), rec.system))
        m.records.append(rec)
        _merge(m, rec)
    return list(machines.values())


def _merge(machine: Machine, record: RunRecord) -> None:
    """Add ``record``'s entries; a newer entry replaces an older one unless it failed where that was ok."""
    index: dict[EntryKey, int] = {s.entry.key: i for i, s in enumerate(machine.entries)}
    for e in record.results:
        new = Sourced(e, record)
        i = index.get(e.key)
        if i is None:
            index[e.key] = len(machine.entries)
            machine.entries.append(new)
            continue
        old = machine.entries[i]
        if e.status is Status.OK or old.entry.status is not Status.OK:
            machine.entries[i] = new
            machine.superseded.append((old, new))
        else:
            machine.superseded.append((new, old))


def command_of(record: RunRecord) -> str:
    """The command that produced ``record`` (from ``config.argv``)."""
    argv = (record.config or {}).get("argv")
    if not isinstance(argv, list):
        return "(command not recorded)"
    return "levit-bench " + shlex.join(str(a) for a in argv) if argv else "levit-bench"


def sources_text(items: Iterable[Sourced]) -> str:
    """'From FILE (`levit-bench …`); …' for the files behind a figure."""
    records: dict[int, RunRecord] = {}
    for s in items:
        records.setdefault(id(s.record), s.record)
    if not records:
        return ""
    parts = [f"`{r.source or '(unsaved results)'}` (regenerate: `{command_of(r)}`)" for r in records.values()]
    return "Source: " + "; ".join(parts) + "."


def spec_of(model: str) -> zoo.ModelSpec | None:
    """The zoo spec, without importing timm for ``timm:`` names (they carry no published figures)."""
    if model.startswith("timm:"):
        return None
    try:
        return zoo.model_spec(model)
    except UserError:
        return None


def family_of(model: str) -> str:
    spec = spec_of(model)
    return spec.family if spec else "timm"


def base_model(model: str) -> str:
    """The conv layout of LeViT counts as the same model as the token layout."""
    stem = model.removesuffix("_conv")
    return stem if stem != model and stem in zoo.REGISTRY else model
