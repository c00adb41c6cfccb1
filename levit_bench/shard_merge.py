"""The shards of one plan joined into one results file (issue 23; ``levit-bench merge``).

One plan (one hash), each shard once, every entry of the expanded plan finished, one kind of machine:
anything else is a UserError that says which files and entries.  Shards measured on different
machines (another CPU, core count or library version: ``sysinfo.machine_differences``) are refused
rather than merged: a results file has one ``system``, and ``report`` shows each file's entries
as that machine's speeds, so another machine's entries inside it would be shown as this one's.
Hosts of one kind (the nodes of a Slurm partition, CI runners of one type) merge, and each shard's
host is kept in ``config.plan.shards``.  Group numbers are renumbered per shard, so entries of two
shards (timed in different rounds, maybe on different hosts) are never paired round by round.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from . import plan as planfile
from .errors import UserError
from .results import Entry, RunRecord
from .shards import missing_by_shard
from .spec import Status
from .sysinfo import machine_differences

#: entries per shard a message lists before "and N more"
SHOWN = 6


def interrupted(e: Entry) -> bool:
    """Cut short by an interrupt (timed in fewer rounds than planned, or never timed)."""
    return any(n.startswith("interrupted") for n in e.notes) or (
        e.status is Status.SKIPPED and e.reason.startswith("interrupted"))


def finished(e: Entry) -> bool:
    """Ended, measured or with its reason (failed, skipped here), and not by an interrupt."""
    return not interrupted(e)


def step_of(e: Entry) -> planfile.PlanEntry:
    return planfile.PlanEntry(e.model, e.precision, e.backend, e.batch_size)


def _name(r: RunRecord) -> str:
    return r.source or "(unsaved results)"


def _plan(r: RunRecord) -> dict[str, Any]:
    found = (r.config or {}).get("plan")
    if not isinstance(found, dict) or not found.get("hash"):
        raise UserError(f"{_name(r)} records no plan: merge joins the shards of one plan "
                        "(levit-bench run PLAN.toml --shard I/N)")
    return found


def _shard(p: dict[str, Any]) -> tuple[int, int]:
    s = p.get("shard")
    return (int(s["index"]), int(s["count"])) if s else (0, 1)


def _listed(entries: Sequence[planfile.PlanEntry]) -> str:
    more = f", and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
    return ", ".join(e.label() for e in entries[:SHOWN]) + more


def merge_shards(records: Sequence[RunRecord]) -> RunRecord:
    """One record of every entry of the plan, from its shards' records (UserError: mixed plans, a
    shard twice, another machine, entries missing — by shard)."""
    if not records:
        raise UserError("no results files given")
    plans = [_plan(r) for r in records]
    hashes: dict[str, list[str]] = {}
    for r, p in zip(records, plans):
        hashes.setdefault(p["hash"], []).append(_name(r))
    if len(hashes) > 1:
        raise UserError("the files are shards of different plans: " + "; ".join(
            f"{h[:12]} ({', '.join(names)})" for h, names in hashes.items()))
    counts = {_shard(p)[1] for p in plans}
    if len(counts) > 1:
        raise UserError(f"the files split the plan in different shard counts ({', '.join(map(str, sorted(counts)))})")
    count = counts.pop()
    by_index: dict[int, tuple[RunRecord, dict]] = {}
    for r, p in zip(records, plans):
        i = _shard(p)[0]
        if i in by_index:
            raise UserError(f"shard {i}/{count} given twice: {_name(by_index[i][0])} and {_name(r)}")
        by_index[i] = (r, p)
    ordered = [by_index[i] for i in sorted(by_index)]
    base, base_plan = ordered[0]
    for r, _p in ordered[1:]:
        differs = machine_differences(base.system, r.system)
        if r.tool_version != base.tool_version:
            differs.append(f"levit-bench {base.tool_version} vs {r.tool_version}")
        if differs:
            raise UserError(f"{_name(base)} and {_name(r)} ran on different machines or versions "
                            f"({'; '.join(differs)}): one plan's shards are one measurement; measure the plan on "
                            "each machine and give `report` each machine's merged file")
    entries = planfile.entries_of(base_plan["plan"])
    assignment = base_plan.get("assignment") or [0] * len(entries)
    index = {e: i for i, e in enumerate(entries)}
    done: dict[int, set[int]] = {}
    chosen: dict[int, tuple[Entry, int]] = {}
    for n, (r, p) in enumerate(ordered):
        shard = _shard(p)[0]
        for e in r.results:
            i = index.get(step_of(e))
            if i is not None and assignment[i] == shard and finished(e):
                done.setdefault(shard, set()).add(i)
                chosen[i] = (e, n)
    missing = missing_by_shard(assignment, done)
    if missing:
        parts = []
        for shard, idx in sorted(missing.items()):
            source = f" ({_name(by_index[shard][0])})" if shard in by_index else " (no file)"
            parts.append(f"shard {shard}/{count}{source}: {len(idx)} missing: {_listed([entries[i] for i in idx])}")
        raise UserError("the shards do not complete the plan: " + "; ".join(parts)
                        + " (run the missing shards, or --resume the interrupted ones)")
    return _joined(ordered, base, base_plan, [chosen[i] for i in range(len(entries))])


def _joined(ordered: list[tuple[RunRecord, dict]], base: RunRecord, base_plan: dict,
            chosen: list[tuple[Entry, int]]) -> RunRecord:
    # each shard's groups renumbered after the previous shard's: no two shards' entries pair
    offsets, top = [], 0
    for r, _p in ordered:
        offsets.append(top)
        top += 1 + max((e.group for e in r.results if e.group is not None), default=-1)
    results = []
    for e, n in chosen:
        e = copy.copy(e)
        if e.group is not None:
            e.group += offsets[n]
        results.append(e)
    config = copy.deepcopy(base.config)
    config["plan"] = {**copy.deepcopy(base_plan), "shard": None, "shards": [
        {"index": _shard(p)[0], "count": _shard(p)[1], "file": _name(r), "hostname": r.system.get("hostname"),
         "created": r.created, "git_commit": r.system.get("git_commit")} for r, p in ordered]}
    return RunRecord(system=copy.deepcopy(base.system), config=config, results=results, complete=True,
                     created=max(r.created for r, _p in ordered), tool_version=base.tool_version)
