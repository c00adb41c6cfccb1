"""``levit-bench list``: the model zoo with the paper's figures."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from .. import paper, render, zoo
from .args import EXIT_OK, Parser


def cmd_list(argv: Sequence[str]) -> int:
    p = Parser(prog="levit-bench list", description="The model zoo with published figures.")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    specs = [zoo.model_spec(n) for n in zoo.list_models(args.pattern)]
    if args.json:
        rows = [{"name": s.name, "family": s.family, "img_size": s.img_size, "timm_name": s.timm_name,
                 "published": asdict(s.published) if s.published else None} for s in specs]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return EXIT_OK
    from rich.table import Table

    t = Table(title=f"levit-bench model zoo ({paper.SYSTEMS_TITLE})", title_justify="left")
    for col, just in [("model", "left"), ("family", "left"), ("input", "right"), ("params", "right"),
                      ("FLOPs", "right"), ("top-1", "right"), ("GPU img/s", "right"), ("Intel img/s", "right"),
                      ("ARM img/s", "right")]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    fmt = lambda v, f="{:g}": "" if v is None else f.format(v)  # noqa: E731
    for s in specs:
        pub = s.published
        top1 = "" if not pub or pub.top1 is None else f"{pub.top1:g}" + ("" if pub.top1_verified else "*")
        t.add_row(s.name, s.family, str(s.img_size),
                  fmt(pub and pub.params, "{:,}"), fmt(pub and pub.flops_m, "{:g}M"), top1,
                  fmt(pub and pub.gpu), fmt(pub and pub.intel_cpu), fmt(pub and pub.arm))
    con = render.console()
    con.print(t)
    con.print("[dim]* top-1 from the model's own paper, not verified against the LeViT paper's table. "
              "Any timm model: timm:NAME[/]")
    return EXIT_OK
