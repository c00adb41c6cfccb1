"""``levit-bench sysinfo``: the machine and library facts recorded with every result."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from .. import render, sysinfo
from .args import EXIT_OK, Parser


def cmd_sysinfo(argv: Sequence[str]) -> int:
    p = Parser(prog="levit-bench sysinfo", description="Machine and library facts recorded with every result.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    info = sysinfo.collect()
    if args.json:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
        return EXIT_OK
    from rich.table import Table

    t = Table(show_header=False)
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items() if b is not None)
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        t.add_row(k, str(v))
    render.console().print(t)
    return EXIT_OK
