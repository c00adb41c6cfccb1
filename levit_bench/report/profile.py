"""The profile section: where each model's time goes in each runtime, from the runtimes' own profilers.

Profiles come from results files written by ``levit-bench profile --out`` (their ``profiles``); each
machine that has some gets a stacked-bar figure and the table of category shares beside it, so the
"why" of a speed ratio is read off measured op times rather than hand-counted graphs.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..errors import UserError
from ..present import md_table
from ..profiling import CATEGORIES, Profile
from ..profiling.table import overhead_text
from ..spec import threads_text
from .merge import Machine, command_of


def machine_profiles(machine: Machine) -> list[Profile]:
    """Every profile stored in the machine's files, in file order (newest last); one that cannot be
    read is a UserError naming its file (never a traceback from the report)."""
    out = []
    for r in machine.records:
        for i, d in enumerate(r.profiles):
            try:
                out.append(Profile.from_dict(d))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise UserError(f"{r.source}: profiles/{i} cannot be read: {exc}") from None
    return out


def profile_table(profiles: Sequence[Profile]) -> str:
    header = ["model", "backend", "setting"] + list(CATEGORIES.values()) + ["coverage", "op ms / call",
                                                                              "profiler overhead [95%]"]
    rows = []
    for p in profiles:
        setting = f"{p.precision}, batch {p.batch_size}, {threads_text(p.threads)}"
        if not p.ok:
            rows.append([p.model, p.variant, setting, f"failed: {p.reason}"] + [""] * (len(CATEGORIES) + 2))
            continue
        shares = p.categories
        rows.append([p.model, p.variant, setting] + [f"{shares.get(k, 0.0):.0%}" if shares.get(k) else "·"
                                                     for k in CATEGORIES]
                    + [f"{p.coverage:.1%}", f"{p.op_s * 1e3:,.1f}", overhead_text(p) or "—"])
    return md_table(header, rows, "lll" + "r" * (len(CATEGORIES) + 3))


def profile_section(machine: Machine, profiles: Sequence[Profile], figure: str | None) -> str:
    """Markdown for one machine's profiles; ``figure``: the PNG's link target (None: no figure)."""
    commands = sorted({f"`{command_of(r)}`" for r in machine.records if r.profiles})
    lines = [f"### Where the time goes: {machine.title}", ""]
    if figure:
        lines += [f"![share of op time per category]({figure})", ""]
    lines += [profile_table(profiles), "",
              "Share of each call's profiled op time by category, from each runtime's own profiler (torch profiler "
              "for the torch backends, ONNX Runtime's session profiling, OpenVINO's performance counters), mapped "
              "to one vocabulary (`levit_bench/profiling/categories.py`); coverage: the named categories' share "
              "(the rest is `other`, listed by op name in the command's output). The overhead compares profiled "
              "calls with unprofiled ones timed in the same rounds.", "",
              "Measured by " + ", ".join(commands) + ".", ""]
    return "\n".join(lines)
