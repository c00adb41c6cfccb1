"""``levit-bench compare BASE NEW``: the comparison as a table or Markdown; the exit code is the gate."""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from .. import gate
from ..present import fmt_ips, fmt_p, md_table
from ..verdict import FAIL, INCONCLUSIVE, PASS
from . import ci_outputs, render
from .args import EXIT_OK, EXIT_REGRESSION, Parser, percent, probability

OUTCOME_STYLE = {PASS: "green", FAIL: "bold red", INCONCLUSIVE: "yellow", gate.REFERENCE: "cyan"}
OUTCOME_WORD = {PASS: "pass", FAIL: "FAIL", INCONCLUSIVE: "inconclusive", gate.REFERENCE: gate.REFERENCE}


def headers(result: gate.CompareResult) -> list[str]:
    cols = ["model", "backend", "device", "batch", "threads", "base img/s", "new img/s"]
    if result.normalize_by:
        ref = "/".join(result.normalize_by)
        cols += [f"base ×{ref}", f"new ×{ref}"]
    bounds = f"bounds (1-sided {1 - result.alpha:.0%})"
    return cols + ["figures", "change", bounds, "p", "outcome"]


def _bound(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%" if 0 < ratio < math.inf else "—"


def cells(r: gate.EntryComparison, normalized: bool) -> list[str]:
    e, v = r.base, r.verdict
    out = [e.model, e.variant, f"{e.device} {e.precision}", str(e.batch_size), str(e.threads),
           fmt_ips(r.base_ips), fmt_ips(r.new_ips)]
    if normalized:
        out += [f"{r.base_relative:.3f}", f"{r.new_relative:.3f}"]
    lo, hi = v.interval
    return out + [_by_word(r.by), f"{r.change_pct:+.1f}%", f"{_bound(lo)} … {_bound(hi)}",
                  fmt_p(v.p), OUTCOME_WORD[r.outcome]]


#: how a row and the figures line name an adjustment (``entry_parts.ADJUSTMENTS``)
BY_WORDS = {"on_cpu": "on-CPU", "canary": "canary"}


def _by_word(by: tuple[str, ...]) -> str:
    return " + ".join(BY_WORDS[a] for a in by) if by else "raw"


def figures_line(result: gate.CompareResult) -> str:
    """Which figures were tested, per entry: adjusted by the on-CPU share and the canary (as both
    files allow), or raw."""
    if not result.rows:
        return "figures: load records only (p99 and peak rate: distribution-free intervals, no canary)"
    kinds: dict[tuple[str, ...], int] = {}
    for r in result.rows:
        kinds[r.by] = kinds.get(r.by, 0) + 1
    if list(kinds) == [()]:
        return "figures: raw for every entry (a file without the machine-speed canary: a run's machine speed is not cancelled)"
    if len(kinds) == 1:
        return (f"figures: adjusted by {_by_word(next(iter(kinds)))} for every entry (what the adjustments leave of "
                "each run's speed is in the floor)")
    return "figures: " + ", ".join(f"{_by_word(by)} for {n} entries" for by, n in kinds.items()) + \
        " (what both files carry)"


def headline(result: gate.CompareResult, inconclusive: str = PASS) -> str:
    """The gate's decision in one line, the inconclusive case said prominently with what would decide it."""
    thr = f"{result.threshold_pct:g}%"
    outcome = result.outcome
    gate_text = f"gate --fail-above {thr}" if result.gate_asked else f"no gate asked (outcomes at {thr}; exit 0)"
    if outcome == FAIL:
        worst = ", ".join([f"{r.base.model}/{r.base.variant} batch {r.base.batch_size} {r.change_pct:+.1f}%"
                           for r in result.with_outcome(FAIL)] +
                          [f"{r.base.model}/{r.base.variant} {r.figure} {r.change_pct:+.1f}%"
                           for r in result.load_rows if r.outcome == FAIL])
        return f"{gate_text}: FAIL ({worst})"
    if outcome == INCONCLUSIVE:
        n = len(result.with_outcome(INCONCLUSIVE)) + sum(r.outcome == INCONCLUSIVE for r in result.load_rows)
        more = result.more_rounds()
        stuck = sum(r.verdict.more_rounds is None for r in result.with_outcome(INCONCLUSIVE))
        hint = advice(result)
        see = "see each entry's reason" + (f"; {hint}" if hint else "")
        would = (f"about {more} more rounds per side would decide" + (f" all but {stuck} ({see})" if stuck else "")
                 if more else "longer load levels (levit-bench load --duration) would bound more p99s" if not
                 result.with_outcome(INCONCLUSIVE) else f"more rounds would not decide all of them ({see})")
        counted = (f"counted as {inconclusive}: --inconclusive {inconclusive}" if result.gate_asked else "no gate asked")
        return (f"{gate_text}: INCONCLUSIVE ({counted}): {n} entr{'y' if n == 1 else 'ies'}: a {thr} change cannot be "
                f"told at this noise; {would}")
    return f"{gate_text}: pass"


def summary_line(result: gate.CompareResult) -> str:
    """How many entries got which outcome, and on which figures (the decision is :func:`headline`)."""
    c = result.counts()
    text = (f"{c[FAIL]} fail, {c[INCONCLUSIVE]} inconclusive, {c[PASS]} pass (one-sided alpha {result.alpha:g} "
            f"per entry)")
    if result.normalize_by:
        text += f"; speeds relative to {'/'.join(result.normalize_by)} in the same run"
    text += noise_words(result)
    if result.differences:
        text += f"; the machines differ ({'; '.join(result.differences)})"
    return f"{text}; {figures_line(result)}"


#: what the unnormalized test's floor holds (``pair_noise.run_factor_floor``)
FLOOR_WORDS = ("; the test's floor holds what two runs' machine speeds differ by after the adjustments: a shift "
               "all entries share within it is inconclusive")


def advice(result: gate.CompareResult) -> str:
    """What tells more than two unnormalized runs can: the other entries as reference (where there
    are enough of them), or both sides in one job."""
    if result.plan or result.normalize_by:
        return ""
    plan = result.noise is not None and result.noise.entries >= gate.MIN_PLAN_ENTRIES
    return ("--normalize-by plan tests each entry against the others, " if plan else "") + \
        "levit-bench ab times both sides in one job"


def noise_words(result: gate.CompareResult) -> str:
    """What the entries in common said of the noise between the two runs, and what the test made of it."""
    n = result.noise
    if n is None:
        return ""
    together = f"; the entries moved together by {math.exp(n.common) - 1:+.1%} (median)"
    if result.plan:
        together += ", divided out: each entry is tested against the median of the others"
    elif abs(n.common) > -math.log(1 - result.threshold_pct / 100) / 2:
        together += " (each run's machine speed, or a change common to all: two runs cannot tell which)"
    if n.excess_sd is None:
        return together + f"; {n.entries} entries are too few to measure the spread between the runs" + (
            "" if result.normalize_by else f"{FLOOR_WORDS} ({advice(result)})")
    moved = f"; an entry moved {n.excess_sd:.1%} (SD) beyond its rounds' error between these runs"
    if result.plan:
        return together + moved + f", the test's floor (at least {gate.GATE_FLOOR:.1%})"
    if result.normalize_by:
        return together + moved
    return together + moved + f"{FLOOR_WORDS} ({advice(result)})"


def reasons(result: gate.CompareResult) -> list[str]:
    """Each failing or inconclusive entry's reason, in one line."""
    return [f"{r.base.label()}: {r.verdict.reason}" for r in result.rows if r.outcome in (FAIL, INCONCLUSIVE)] + \
        [f"{r.base.label()} {r.base.scenario}, {r.figure}: {r.reason}" for r in result.load_rows
         if r.outcome in (FAIL, INCONCLUSIVE)]


def comparison_markdown(result: gate.CompareResult, inconclusive: str = PASS) -> str:
    """The comparison as Markdown (for CI job summaries and pull-request comments): the decision first."""
    lines = [f"**{headline(result, inconclusive)}**", "",
             f"Comparing `{result.new_source}` (new) against `{result.base_source}` (base).", "",
             md_table(headers(result), (cells(r, bool(result.normalize_by)) for r in result.rows)) if result.rows
             else "(no timing entries in common)",
             *(["", md_table(LOAD_HEADER, map(load_cells, result.load_rows))] if result.load_rows else []),
             "", summary_line(result)] + [f"\n**Warning**: {w}" for w in result.warnings]
    if reasons(result):
        lines += ["", "Why:", ""] + [f"- {x}" for x in reasons(result)]
    if result.not_compared:
        lines += ["", "Not compared:", ""] + [f"- {x}" for x in result.not_compared]
    return "\n".join(lines) + "\n"


def comparison_table(result: gate.CompareResult):
    """The comparison as a rich Table."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{result.new_source} (new) vs {result.base_source} (base)", title_justify="left")
    for col in headers(result):
        t.add_column(col, justify="left" if col in ("model", "backend", "device", "figures", "outcome") else "right")
    for r in result.rows:
        row = [escape(c) for c in cells(r, bool(result.normalize_by))]
        row[-1] = f"[{OUTCOME_STYLE[r.outcome]}]{row[-1]}[/]"
        t.add_row(*row)
    return t


LOAD_HEADER = ["model", "backend", "scenario", "figure", "base", "new", "change", "new/base [95%]", "outcome"]


def load_cells(r) -> list[str]:
    """One gated load figure (``load_compare.LoadComparison``) as a row of :data:`LOAD_HEADER`."""
    lo, hi = r.interval
    return [r.base.model, r.base.variant, r.base.scenario, r.figure, f"{r.base_value:.4g}", f"{r.new_value:.4g}",
            f"{r.change_pct:+.1f}%", f"{lo:.3f} … {hi:.3f}" if math.isfinite(hi) else f"{lo:.3f} … ∞",
            OUTCOME_WORD[r.outcome]]


def load_table(result: gate.CompareResult):
    """The gated load figures (p99, peak rate) as a rich Table."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="latency under load: p99 and peak rate", title_justify="left")
    for col in LOAD_HEADER:
        t.add_column(col, justify="right" if col in ("base", "new", "change", "new/base [95%]") else "left")
    for r in result.load_rows:
        row = [escape(c) for c in load_cells(r)]
        row[-1] = f"[{OUTCOME_STYLE[r.outcome]}]{row[-1]}[/]"
        t.add_row(*row)
    return t


def compare_parser() -> Parser:
    p = Parser(prog="levit-bench compare",
               description="Compare two results files entry by entry: pass, fail or inconclusive from a one-sided "
               "test on the log round medians (adjusted by the on-CPU share and the canary, as both files allow) "
               "and the size "
               "threshold. Exit 1 on fail (and on inconclusive with --inconclusive fail); 2 for unreadable or "
               "incompatible files.")
    p.add_argument("base", help="baseline results file (JSON)")
    p.add_argument("new", help="new results file (JSON)")
    p.add_argument("--fail-above", type=percent("--fail-above"), default=None, metavar="PCT",
                   help="gate: exit 1 when an entry is significantly slower and its estimate more than PCT percent "
                   f"slower (without it the outcomes are shown at {gate.DEFAULT_THRESHOLD_PCT:g}%% and the exit is 0)")
    p.add_argument("--inconclusive", choices=gate.INCONCLUSIVE_POLICIES, default=PASS,
                   help="what an inconclusive entry does to the gate (default pass: exit 0, said in the summary)")
    p.add_argument("--normalize-by", default=None, metavar="MODEL[/BACKEND]|plan",
                   help="compare speeds relative to this entry measured in the same run "
                   "(same device, precision, batch, threads; backend default torch), e.g. levit_128s/torch; "
                   "'plan': each entry relative to the median of the other entries in common (each run's "
                   "machine speed cancels, and so would a change that slows every entry alike)")
    p.add_argument("--alpha", type=probability("--alpha"), default=gate.DEFAULT_ALPHA,
                   help=f"one-sided significance level of the test, per entry (default {gate.DEFAULT_ALPHA:g})")
    ci_outputs.add_ci_outputs(p)
    return p


def cmd_compare(argv: Sequence[str]) -> int:
    args = compare_parser().parse_args(argv)
    ci_outputs.check_ci_outputs(args)
    result = gate.compare_files(args.base, args.new, args.normalize_by, fail_above_pct=args.fail_above,
                                alpha=args.alpha)
    code = EXIT_REGRESSION if result.failed(args.inconclusive) else EXIT_OK
    for warning in result.warnings:
        sys.stderr.write(f"levit-bench: warning: {warning}\n")
    markdown = comparison_markdown(result, args.inconclusive)
    new = [(r.new.label(), r.new) for r in result.rows]
    ci_outputs.write_ci_outputs(args, markdown, new)
    if args.markdown == "-":
        sys.stdout.write(markdown)
        return code
    from rich.markup import escape

    out = render.console()
    if result.rows:
        out.print(comparison_table(result))
    if result.load_rows:
        out.print(load_table(result))
    for line in reasons(result):
        out.print(f"[dim]{escape(line)}[/]")
    for line in result.not_compared:
        out.print(f"[dim]not compared: {escape(line)}[/]")
    out.print(escape(summary_line(result)))
    style = OUTCOME_STYLE[result.outcome] if result.gate_asked else "default"
    out.print(f"[{style}]{escape(headline(result, args.inconclusive))}[/]")
    return code
