"""Plan files on the command line (issue 23): the plan flags ``run`` and ``plan`` share, a plan
file's keys read off the parser itself (so every flag is a key, and no second list is kept), the
file's values under the flags given, and the fleet view of a resolved plan (its entries, hash,
groups, costs and this run's shard).

A key is a flag's destination (``--min-time`` is ``min_time``) in the table of the flag's group:
``[plan]`` holds the selection flags (``--model`` ... the runtime options), ``--paper`` and the plan
flags that shape the plan (``normalize_by``, ``chunk``), with the four sweeps named in the plural
(``models``, ``backends``, ``batch_sizes``, ``precisions``) and ``exclude``; ``[timing]`` the timing
flags; ``[input]`` the input flags (``input = "jpeg"``, ``decoder``, ``decode_threads``).  Flags given on the command line win over the file; then the one resolution path
(``front.resolve``, ``front.resolve_timing``) runs on the result.
"""
from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import plan as planfile
from .. import shards
from ..errors import UserError
from ..plan import PlanEntry
from ..selection import Selection
from .args import positive_int

SELECTION_GROUP, TIMING_GROUP, PLAN_GROUP, INPUT_GROUP = "what to measure", "timing", "plan", "input"
#: the sweeps, named in the plural in a plan file (their flags are repeatable)
PLURAL = {"model": "models", "backend": "backends", "batch_size": "batch_sizes", "precision": "precisions"}
#: plan flags that belong to one invocation, not to the plan a file describes
NOT_IN_FILE = {"plan_file", "shard", "resume"}


def add_plan_flags(p: argparse.ArgumentParser, resume: bool, file_required: bool = False) -> None:
    """The plan file (positional) and the plan flags: --shard, --normalize-by, --chunk; ``resume``:
    --resume too (``run``)."""
    g = p.add_argument_group(PLAN_GROUP)
    g.add_argument("plan_file", nargs=None if file_required else "?", default=None, metavar="PLAN.toml",
                   help="a plan file ([plan] and [timing] tables, keys named after the flags; docs/fleet.md); "
                   "flags given here override its values")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help=f"take shard I of N (zero-based) of the plan, balanced by estimated cost, never splitting "
                   f"entries a paired ratio needs; 'auto': from ${shards.SHARD_ENV}, a Slurm array job or a "
                   f"Kubernetes indexed Job (default: ${shards.SHARD_ENV} where set, else the whole plan)")
    g.add_argument("--normalize-by", default=None, metavar="MODEL[/BACKEND]|plan",
                   help="the reference `compare --normalize-by` will use: every shard keeps it with the entries "
                   "it normalizes (same precision and batch); 'plan': each entry against the others (nothing to "
                   "keep together)")
    g.add_argument("--chunk", type=positive_int("--chunk"), default=None, metavar="N",
                   help="time the plan in chunks of at least N entries (whole groups), one after another: an "
                   "interrupted run keeps every chunk it finished, and --resume measures the rest "
                   "(default: every entry in the same rounds)")
    if resume:
        g.add_argument("--resume", default=None, metavar="FILE",
                       help="complete FILE, an interrupted run of this plan on this machine: keep its finished "
                       "entries, measure the rest, write FILE in place")


def _groups(p: argparse.ArgumentParser) -> dict[str, list[argparse.Action]]:
    return {g.title: list(g._group_actions) for g in p._action_groups if g.title}  # noqa: SLF001


def file_keys(p: argparse.ArgumentParser) -> dict[str, dict[str, argparse.Action]]:
    """Per table, each key a plan file may set and the flag (argparse action) it stands for."""
    groups = _groups(p)
    plan_actions = groups.get(SELECTION_GROUP, []) + [a for a in p._actions if a.dest == "paper"]  # noqa: SLF001
    plan_actions += [a for a in groups.get(PLAN_GROUP, []) if a.dest not in NOT_IN_FILE]
    return {"plan": {PLURAL.get(a.dest, a.dest): a for a in plan_actions},
            "timing": {a.dest: a for a in groups.get(TIMING_GROUP, [])},
            "input": {a.dest: a for a in groups.get(INPUT_GROUP, [])}}


def _convert(action: argparse.Action, value: Any, at: str) -> Any:
    """A file's value as argparse would have stored it for the flag (its own type and choices)."""
    flag = action.option_strings[0] if action.option_strings else action.dest
    if action.nargs == 0:  # a switch
        if type(value) is not bool:
            raise UserError(f"{at}: must be true or false (the flag {flag}), got {value!r}")
        return True if value else action.default
    many = isinstance(action, argparse._AppendAction)  # noqa: SLF001
    values = value if many and isinstance(value, list) else [value]
    if many and not values:
        raise UserError(f"{at}: an empty list: the sweep would measure nothing")
    out = []
    for v in values:
        if isinstance(v, (bool, list, dict)):
            raise UserError(f"{at}: {v!r} is not a value {flag} takes")
        text = str(v)
        try:
            converted = action.type(text) if action.type else text
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UserError(f"{at}: {exc}") from None
        if action.choices is not None and converted not in action.choices:
            raise UserError(f"{at}: {v!r} is not one of {', '.join(map(str, action.choices))}")
        out.append(converted)
    return out if many else out[0]


def _check_names(key: str, value: list, device: str, at: str) -> None:
    """Models, backends and precisions checked one key at a time, so the message names the line."""
    from .front import resolve_backends, resolve_models, resolve_precisions

    check: dict[str, Callable[[list], object]] = {"models": resolve_models,
                                                   "backends": lambda v: resolve_backends(v, device),
                                                   "precisions": lambda v: resolve_precisions(v, device)}
    if key in check:
        try:
            check[key](value)
        except UserError as exc:
            raise UserError(f"{at}: {exc}") from None


def parse(factory: Callable[[], argparse.ArgumentParser], argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed; with a plan file, its values wherever the command line did not give the flag.
    Sets ``args.plan_excludes`` (the file's exclude rules; [] without)."""
    args = factory().parse_args(argv)
    args.plan_excludes = []
    if args.plan_file is None:
        return args
    data, text = planfile.read_toml(args.plan_file)
    quiet = factory()
    for action in quiet._actions:  # noqa: SLF001 - what the command line itself gave: nothing defaults
        action.default = argparse.SUPPRESS
    given = set(vars(quiet.parse_args(argv)))
    keys = file_keys(factory())
    device = data.get("plan", {}).get("device", "cpu")
    for table in planfile.TABLES:
        for key, value in data.get(table, {}).items():
            at = planfile.where(args.plan_file, text, table, key)
            if table == "plan" and key == "exclude":
                args.plan_excludes = planfile.check_excludes(value, args.plan_file, text)
                continue
            action = keys[table].get(key)
            if action is None:
                other = next((t for t in planfile.TABLES if t != table and key in keys[t]), None)
                close = difflib.get_close_matches(key, list(keys[table]), n=1, cutoff=0.6)
                hint = f" (it belongs in [{other}])" if other else f" (did you mean {close[0]}?)" if close else \
                    f" (keys of [{table}]: {', '.join(sorted(keys[table]) + (['exclude'] if table == 'plan' else []))})"
                raise UserError(f"{at}: unknown key{hint}")
            converted = _convert(action, value, at)
            if table == "plan" and key in PLURAL.values():
                _check_names(key, converted, str(device), at)
            if action.dest not in given:
                setattr(args, action.dest, converted)
    return args


# ---------------------------------------------------------------------------------------------
# the fleet view of a resolved plan


@dataclass
class Fleet:
    """A resolved plan as shards see it: every entry, its group and cost, the canonical form and
    hash, and this run's shard (None: the whole plan) with the selection it measures."""

    entries: list[PlanEntry]
    groups: list[list[int]]
    cost: list[float]
    canonical: dict[str, Any]
    hash: str
    shard: tuple[int, int] | None
    assignment: list[int]  # the shard of each entry (all 0 without shards)
    selection: Selection  # what this run measures (the shard's entries)
    source: str | None = None

    def mine(self) -> list[int]:
        index = self.shard[0] if self.shard else 0
        return [i for i, s in enumerate(self.assignment) if s == index]

    def chunks(self, size: int | None) -> list[frozenset[tuple]] | None:
        """This run's entries in chunks of at least ``size`` entries, whole groups, in plan order."""
        if not size:
            return None
        mine, out, current = set(self.mine()), [], []
        for g in self.groups:
            if g[0] in mine:
                current += [tuple(self.entries[i]) for i in g]
                if len(current) >= size:
                    out.append(frozenset(current))
                    current = []
        return out + [frozenset(current)] * bool(current)

    def record(self) -> dict[str, Any]:
        """What a results file keeps in ``config.plan``."""
        shard = None if self.shard is None else {"index": self.shard[0], "count": self.shard[1]}
        return {"hash": self.hash, "file": self.source, "plan": self.canonical, "shard": shard,
                "assignment": list(self.assignment) if self.shard else None}


def resolve_fleet(args: argparse.Namespace, selection: Selection, env: dict[str, str] | None = None,
                  with_costs: bool = False) -> Fleet:
    """The plan's entries (less the file's exclude rules), groups, costs, hash, and the shard this
    run takes; UserError for an empty sweep, a reference the plan lacks, a shard out of range.
    Costs are estimated where a shard is taken or ``with_costs`` (a model without a published
    figure is counted, which builds it on the meta device): a plain run does without."""
    import os

    from ..gate import parse_reference
    from ..pair_noise import PLAN

    entries = planfile.expand(selection.steps(), getattr(args, "plan_excludes", []))
    if not entries:
        raise UserError("the plan is empty: its exclude rules leave nothing to measure")
    plan_wide = (args.normalize_by or "").strip() == PLAN  # every entry against the others: nothing to keep together
    reference = parse_reference(args.normalize_by) if args.normalize_by and not plan_wide else None
    if reference is not None:
        shards.check_reference(entries, reference)
    group_list = shards.groups(entries, reference)
    shard = shards.resolve_shard(args.shard, os.environ if env is None else env)
    cost = planfile.costs(entries, selection.img_size) if shard or with_costs else [0.0] * len(entries)
    assignment = shards.split(cost, group_list, shard[1]) if shard else [0] * len(entries)
    canonical = {
        "format": 1, "entries": planfile.entry_dicts(entries), "device": selection.settings.device,
        "threads": args.threads, "options": selection.settings.options.to_dict(), "weights": selection.weights,
        "img_size": selection.img_size, "paper": selection.paper, "normalize_by": PLAN if plan_wide else "/".join(reference) if reference else None,
        "timing": {k: getattr(args, k, None) for k in ("warmup", "min_time", "min_calls", "rounds", "seed", "target_ci",
                                                       "max_time", "processes", "chunk")},
    }
    if getattr(args, "input", "tensor") != "tensor":  # --input jpeg: what the timed path starts from
        canonical["input"] = {k: getattr(args, k, None) for k in ("input", "decoder", "decode_threads")}
    index = shard[0] if shard else 0
    chosen = [tuple(e) for e, s in zip(entries, assignment) if s == index]
    return Fleet(entries, group_list, cost, canonical, planfile.plan_hash(canonical), shard, assignment,
                 selection.restricted(chosen), str(Path(args.plan_file)) if args.plan_file else None)
