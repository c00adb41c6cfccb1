"""``levit-bench list``: the model zoo with the paper's figures, and (``--ops``, always with
``--json``) the multiply-accumulates and parameters counted on each model as it is timed.

Counting builds every model (about a second each, half a minute for the zoo), so the table does it
only when asked: a plain ``list`` answers at once.  ``--json`` is for scripts, which want every
field filled in; a pattern narrows what is built.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from .. import paper, zoo
from ..errors import first_line
from . import render
from .args import EXIT_OK, Parser


def count_all(specs: Sequence[zoo.ModelSpec], show_progress: bool) -> dict[str, dict]:
    """name -> {"macs", "params", "error"} for each spec; a model that fails to build or run keeps
    its error (one line) and does not stop the others."""
    from ..opcount import model_ops

    out: dict[str, dict] = {}
    with render.progress(render.console(stderr=True, quiet=not show_progress)) as bar:
        task = bar.add_task("counting operations", total=len(specs))
        for s in specs:
            try:
                ops = model_ops(s.name)
                out[s.name] = {"macs": ops.macs, "params": ops.params, "error": None}
            except Exception as exc:  # noqa: BLE001 - one model's failure is that model's row, not the listing
                out[s.name] = {"macs": None, "params": None, "error": first_line(exc)}
            bar.advance(task)
    return out


def cmd_list(argv: Sequence[str]) -> int:
    p = Parser(prog="levit-bench list", description="The model zoo with published figures.")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--json", action="store_true",
                   help="one object per model, with the counted MACs and parameters (builds each model)")
    p.add_argument("--ops", action="store_true",
                   help="count each model's multiply-accumulates and parameters as it is timed "
                   "(fused, at its input size; about a second per model)")
    args = p.parse_args(argv)
    specs = [zoo.model_spec(n) for n in zoo.list_models(args.pattern)]
    counted = count_all(specs, show_progress=not args.json) if args.json or args.ops else {}
    if args.json:
        rows = [{"name": s.name, "family": s.family, "img_size": s.img_size, "timm_name": s.timm_name,
                 **counted[s.name], "published": asdict(s.published) if s.published else None} for s in specs]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return EXIT_OK
    from rich.table import Table

    t = Table(title=f"levit-bench model zoo ({paper.SYSTEMS_TITLE})", title_justify="left")
    columns = [("model", "left"), ("family", "left"), ("input", "right"), ("params", "right"), ("FLOPs", "right")]
    if args.ops:
        columns += [("MACs (counted)", "right"), ("params (counted)", "right")]
    columns += [("top-1", "right"), ("GPU img/s", "right"), ("Intel img/s", "right"), ("ARM img/s", "right")]
    for col, just in columns:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    fmt = lambda v, f="{:g}": "" if v is None else f.format(v)  # noqa: E731
    for s in specs:
        pub = s.published
        top1 = "" if not pub or pub.top1 is None else f"{pub.top1:g}" + ("" if pub.top1_verified else "*")
        ours = []
        if args.ops:
            c = counted[s.name]
            ours = ["failed" if c["error"] else f"{c['macs'] / 1e6:,.0f}M", fmt(c["params"], "{:,}")]
        t.add_row(s.name, s.family, str(s.img_size),
                  fmt(pub and pub.params, "{:,}"), fmt(pub and pub.flops_m, "{:g}M"), *ours, top1,
                  fmt(pub and pub.gpu), fmt(pub and pub.intel_cpu), fmt(pub and pub.arm))
    con = render.console()
    con.print(t)
    con.print("[dim]params and FLOPs: as published (FLOPs are multiply-adds, as the papers count them). "
              "* top-1 from the model's own paper, not verified against the LeViT paper's table. "
              "Any timm model: timm:NAME[/]")
    if args.ops:
        con.print("[dim]counted: multiply-accumulates per image (torch's FLOP counter, halved) and parameters of the "
                  "model as timed: fused (BN folded, LeViT's two heads merged), at its input size, batch 1.[/]")
        for name, c in counted.items():
            if c["error"]:
                con.print(f"[red]{name}: {c['error']}[/]")
    else:
        con.print("[dim]--ops: the MACs and parameters counted on each model as it is timed.[/]")
    return EXIT_OK
