"""``levit-bench cache list|clear``: what the export cache holds, and emptying it."""
from __future__ import annotations

from collections.abc import Sequence

from ..errors import UserError
from . import render
from .front import add_cache_dir
from .args import EXIT_OK, Parser, seconds


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_cache(argv: Sequence[str]) -> int:
    p = Parser(prog="levit-bench cache", description="The export cache: list what it holds, or clear it.")
    p.add_argument("action", choices=["list", "clear"])
    add_cache_dir(p)
    p.add_argument("--older-than", type=seconds("--older-than", True, maximum=float("inf")), default=None,
                   metavar="SECONDS", help="clear: only artifacts not used for this long")
    args = p.parse_args(argv)
    from ..backends.cache import MARKER, ExportCache  # torch: only when the command runs

    cache = ExportCache(args.cache_dir)
    con = render.console()
    if cache.root.is_dir() and not cache.is_marked():
        raise UserError(f"{cache.root} is not a levit-bench cache (it has no {MARKER} written by levit-bench); "
                        "nothing was listed or removed")
    if args.action == "clear":
        builds = cache.sweep_builds()  # first: what killed exports left is counted here, not inside an artifact's
        count, freed = cache.clear(args.older_than)
        swept = f" and {builds} folder(s) left by killed exports" if builds else ""
        con.print(f"removed {count} cached artifacts, {_size(freed)}{swept}, from {cache.root}")
        _say_unrecognised(con, cache)
        if cache.not_removed:  # read-only, or not ours: said, and not a success
            folder, why = cache.not_removed[0]
            raise UserError(f"{len(cache.not_removed)} cached item(s) could not be removed, e.g. {folder}: {why}")
        return EXIT_OK
    from datetime import datetime

    from rich.table import Table

    items = cache.entries()
    t = Table(title=f"export cache {cache.root}", title_justify="left")
    for col in ("backend", "model", "size", "last used", "folder"):
        t.add_column(col, justify="right" if col == "size" else "left")
    for a in items:
        t.add_row(a.backend, a.model, _size(a.bytes), datetime.fromtimestamp(a.last_used).strftime("%Y-%m-%d %H:%M"),
                  str(a.folder))
    con.print(t)
    con.print(f"{len(items)} artifacts, {_size(sum(a.bytes for a in items))} in all")
    _say_unrecognised(con, cache)
    return EXIT_OK


def _say_unrecognised(con, cache) -> None:  # noqa: ANN001 - a rich console and an ExportCache
    others = cache.unrecognised()
    if others:
        shown = ", ".join(str(p.relative_to(cache.root)) for p in others[:3])
        con.print(f"left alone: {len(others)} item(s) levit-bench did not write ({shown}{', …' if len(others) > 3 else ''})")
