"""``levit-bench merge SHARDS... -o FILE``: the shards of one plan joined into one results file
(``shard_merge.merge_shards``: one plan, each shard once, complete, one kind of machine)."""
from __future__ import annotations

from collections.abc import Sequence

from ..report.merge import load_results
from ..results_writer import ResultsWriter
from ..shard_merge import merge_shards
from . import render
from .args import EXIT_OK, Parser


def merge_parser() -> Parser:
    p = Parser(prog="levit-bench merge",
               description="Join the shards of one plan (`levit-bench run PLAN.toml --shard I/N`) into one results "
               "file that `report` and `compare` read; refuses files of different plans or machines, a shard given "
               "twice, and a set that does not complete the plan (listing what is missing, by shard).")
    p.add_argument("shards", nargs="+", help="the shards' results files (JSON) or folders of them")
    p.add_argument("-o", "--out", required=True, help="the merged results file (.json)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (never done unasked)")
    return p


def cmd_merge(argv: Sequence[str]) -> int:
    args = merge_parser().parse_args(argv)
    records = load_results(args.shards)
    merged = merge_shards(records)
    writer = ResultsWriter(args.out, replace=args.force).claim()
    try:
        writer.save(merged)
    finally:
        writer.release()
    shards = merged.config["plan"]["shards"]
    render.console().print(f"merged {len(shards)} shard{'s' * (len(shards) != 1)} of plan "
                           f"{merged.config['plan']['hash'][:12]}: {len(merged.results)} entries in {writer.path}")
    return EXIT_OK
