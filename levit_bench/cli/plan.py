"""``levit-bench plan PLAN.toml``: the expanded plan (each entry, its group, estimated cost and
shard), its hash, and with ``--shard I/N`` what that shard measures; nothing is built or timed."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from ..errors import UserError
from .args import EXIT_OK, Parser
from .front import add_input, add_paper, add_selection, add_timing, resolve, resolve_timing
from . import planfile, render


def plan_parser() -> Parser:
    p = Parser(prog="levit-bench plan",
               description="Show a plan file expanded: every entry with its group (entries a paired ratio needs, "
               "never split by shards), estimated cost (MACs × batch × a runtime factor) and shard; the plan's "
               "hash. Takes the flags of `levit-bench run`, which override the file.")
    add_selection(p)
    add_paper(p)
    add_timing(p, processes=1)
    add_input(p)
    planfile.add_plan_flags(p, resume=False, file_required=True)
    p.add_argument("--shards", type=int, default=None, metavar="N",
                   help="show the split into N shards (default: --shard's count, else 1)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout (nothing else)")
    return p


def describe(fleet: planfile.Fleet, count: int) -> dict:
    """The plan as ``--json`` prints it: hash, entries (group, cost, shard), per-shard totals."""
    from .. import shards

    assignment = fleet.assignment if fleet.shard else shards.split(fleet.cost, fleet.groups, count)
    group_of = {i: n for n, g in enumerate(fleet.groups) for i in g}
    entries = [{**e._asdict(), "index": i, "group": group_of[i], "cost": fleet.cost[i], "shard": assignment[i]}
               for i, e in enumerate(fleet.entries)]
    per = [{"index": s, "entries": sum(1 for a in assignment if a == s),
            "cost": sum(c for c, a in zip(fleet.cost, assignment) if a == s)} for s in range(count)]
    return {"hash": fleet.hash, "file": fleet.source, "count": len(entries), "groups": len(fleet.groups),
            "cost": sum(fleet.cost), "shard": fleet.record()["shard"], "shards": per, "entries": entries,
            "plan": fleet.canonical}


def cmd_plan(argv: Sequence[str]) -> int:
    args = planfile.parse(plan_parser, argv)
    selection = resolve(args)
    resolve_timing(args)  # the timing keys checked as a run checks them
    fleet = planfile.resolve_fleet(args, selection, with_costs=True)
    if args.shards is not None and (args.shards < 1 or (fleet.shard and args.shards != fleet.shard[1])):
        raise UserError(f"--shards {args.shards}: must be a positive count (and --shard's count where both are given)")
    count = fleet.shard[1] if fleet.shard else (args.shards or 1)
    view = describe(fleet, count)
    if args.json:
        sys.stdout.write(json.dumps(view, indent=1) + "\n")
        return EXIT_OK
    out = render.console()
    shown = [e for e in view["entries"] if fleet.shard is None or e["shard"] == fleet.shard[0]]
    rows = [[str(e["index"]), e["model"], e["backend"], e["precision"], str(e["batch_size"]), str(e["group"]),
             f"{e['cost']:.3g}", str(e["shard"])] for e in shown]
    from rich.table import Table

    table = Table(title="the plan, expanded" + (f" (shard {fleet.shard[0]}/{fleet.shard[1]})" if fleet.shard else ""))
    for name in ("#", "model", "backend", "precision", "batch", "group", "est. cost", "shard"):
        table.add_column(name, justify="right" if name in ("#", "batch", "group", "est. cost", "shard") else "left")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    for s in view["shards"]:
        if count > 1:
            out.print(f"shard {s['index']}/{count}: {s['entries']} entries, est. cost {s['cost']:.3g}")
    what = f"shard {fleet.shard[0]}/{fleet.shard[1]}: {len(shown)} of " if fleet.shard else ""
    out.print(f"plan {fleet.hash}: {what}{view['count']} entries in {view['groups']} groups, est. cost "
              f"{view['cost']:.3g} (GMAC per call × runtime and precision factors)")
    return EXIT_OK
