"""``levit-bench compare BASE NEW``: the comparison as a table or Markdown; the exit code is the gate."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import gate
from ..present import fmt_ips, fmt_p, md_table
from . import render
from .args import EXIT_OK, EXIT_REGRESSION, Parser, percent, probability

VERDICT_STYLE = {gate.FASTER: "green", gate.SLOWER: "red", gate.UNCHANGED: "dim", gate.REFERENCE: "cyan"}


def headers(result: gate.CompareResult) -> list[str]:
    cols = ["model", "backend", "device", "batch", "threads", "base img/s", "new img/s"]
    if result.normalize_by:
        ref = "/".join(result.normalize_by)
        cols += [f"base ×{ref}", f"new ×{ref}"]
    return cols + ["change", "95% CI", "p", "verdict"]


def cells(r: gate.EntryComparison, normalized: bool) -> list[str]:
    e = r.base
    out = [e.model, e.variant, f"{e.device} {e.precision}", str(e.batch_size), str(e.threads),
           fmt_ips(r.base_ips), fmt_ips(r.new_ips)]
    if normalized:
        out += [f"{r.base_relative:.3f}", f"{r.new_relative:.3f}"]
    lo, hi = r.ratio_ci95
    return out + [f"{r.change_pct:+.1f}%", f"{(lo - 1) * 100:+.1f}% … {(hi - 1) * 100:+.1f}%", fmt_p(r.p_value),
                  r.verdict]


def summary_line(result: gate.CompareResult, fail_above_pct: float | None) -> str:
    """One line: how many entries got which verdict, and the gate's decision."""
    c = result.counts()
    text = (f"{c[gate.SLOWER]} slower, {c[gate.FASTER]} faster, {c[gate.UNCHANGED]} no significant change "
            f"(alpha {result.alpha:g})")
    if result.normalize_by:
        text += f"; speeds relative to {'/'.join(result.normalize_by)} in the same run"
    if result.differences:
        text += f"; the machines differ ({'; '.join(result.differences)})"
    if fail_above_pct is None:
        return text
    bad = result.regressions(fail_above_pct)
    if not bad:
        return text + f"; gate --fail-above {fail_above_pct:g}%: pass"
    worst = ", ".join(f"{r.base.model}/{r.base.variant} batch {r.base.batch_size} {r.change_pct:+.1f}%" for r in bad)
    return text + f"; gate --fail-above {fail_above_pct:g}%: FAIL ({worst})"


def comparison_markdown(result: gate.CompareResult, fail_above_pct: float | None = None) -> str:
    """The comparison as a Markdown table (for CI job summaries and pull-request comments)."""
    lines = [f"Comparing `{result.new_source}` (new) against `{result.base_source}` (base).", "",
             md_table(headers(result), (cells(r, bool(result.normalize_by)) for r in result.rows)),
             "", summary_line(result, fail_above_pct)] + [f"\n**Warning**: {w}" for w in result.warnings]
    if result.not_compared:
        lines += ["", "Not compared:", ""] + [f"- {x}" for x in result.not_compared]
    return "\n".join(lines) + "\n"


def comparison_table(result: gate.CompareResult):
    """The comparison as a rich Table."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{result.new_source} (new) vs {result.base_source} (base)", title_justify="left")
    for col in headers(result):
        t.add_column(col, justify="left" if col in ("model", "backend", "device", "verdict") else "right")
    for r in result.rows:
        row = [escape(c) for c in cells(r, bool(result.normalize_by))]
        row[-1] = f"[{VERDICT_STYLE[r.verdict]}]{row[-1]}[/]"
        t.add_row(*row)
    return t


def compare_parser() -> Parser:
    p = Parser(prog="levit-bench compare",
               description="Compare two results files entry by entry with a significance test on the raw samples. "
               "Exit 1 only for a significant slowdown above --fail-above; 2 for unreadable or incompatible files.")
    p.add_argument("base", help="baseline results file (JSON)")
    p.add_argument("new", help="new results file (JSON)")
    p.add_argument("--fail-above", type=percent("--fail-above"), default=None, metavar="PCT",
                   help="exit 1 when an entry is slower by more than PCT percent and the slowdown is significant")
    p.add_argument("--normalize-by", default=None, metavar="MODEL[/BACKEND]",
                   help="compare speeds relative to this entry measured in the same run "
                   "(same device, precision, batch, threads; backend default torch), e.g. levit_128s/torch")
    p.add_argument("--alpha", type=probability("--alpha"), default=0.01,
                   help="significance level of the U test (default 0.01)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table instead of the terminal table")
    return p


def cmd_compare(argv: Sequence[str]) -> int:
    args = compare_parser().parse_args(argv)
    result = gate.compare_files(args.base, args.new, args.normalize_by, args.alpha)
    code = EXIT_REGRESSION if result.failed(args.fail_above) else EXIT_OK
    for warning in result.warnings:
        sys.stderr.write(f"levit-bench: warning: {warning}\n")
    if args.markdown:
        sys.stdout.write(comparison_markdown(result, args.fail_above))
        return code
    from rich.markup import escape

    out = render.console()
    out.print(comparison_table(result))
    for line in result.not_compared:
        out.print(f"[dim]not compared: {escape(line)}[/]")
    style = "red" if code == EXIT_REGRESSION else "default"
    out.print(f"[{style}]{escape(summary_line(result, args.fail_above))}[/]")
    return code
