"""Compare two results files entry by entry, and gate CI on significant slowdowns only.

A fixed threshold on one number (pytest-benchmark's ``--benchmark-compare-fail``) fires on shared
runners whose speed drifts 10-30%.  Here an entry counts as slower only when the raw per-call
samples say so (``stats.compare_samples``: Mann-Whitney U *and* a bootstrap CI of the ratio of
medians that excludes 1), and the gate fails only when such a slowdown is also larger than the
threshold.  ``normalize_by`` divides every speed by a reference entry's median speed measured in
the same run, so a baseline recorded on another (faster or slower) machine still gates.

Everything here is a plain function returning dataclasses; ``cmd_compare`` only parses and prints.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError
from .results import Entry, RunRecord, load
from .stats import compare_samples

DEFAULT_REFERENCE_BACKEND = "torch"
FASTER, SLOWER, UNCHANGED, REFERENCE = "faster", "slower", "no significant change", "reference (not gated)"
EXIT_OK, EXIT_REGRESSION = 0, 1


@dataclass
class EntryComparison:
    """One entry measured in both files: speeds, change, significance and verdict."""

    base: Entry
    new: Entry
    change_pct: float  # new speed over base speed, minus one, in percent (normalized when asked)
    ratio_ci95: tuple[float, float]  # of new speed over base speed
    p_value: float
    significant: bool
    verdict: str
    gated: bool = True  # False for the normalization reference itself
    base_relative: float | None = None  # base speed over the reference's median speed (normalized runs)
    new_relative: float | None = None

    @property
    def key(self) -> tuple:
        return self.base.key

    @property
    def base_ips(self) -> float:
        return float(self.base.images_per_second or 0.0)

    @property
    def new_ips(self) -> float:
        return float(self.new.images_per_second or 0.0)

    def regressed(self, fail_above_pct: float) -> bool:
        """Slower by more than ``fail_above_pct`` percent *and* significantly so."""
        return self.gated and self.verdict == SLOWER and -self.change_pct > fail_above_pct


@dataclass
class CompareResult:
    """Every matched entry's comparison, plus what could not be compared and why."""

    base_source: str
    new_source: str
    rows: list[EntryComparison]
    not_compared: list[str] = field(default_factory=list)  # one line each, with the reason
    warnings: list[str] = field(default_factory=list)  # compared, but with different runtime options
    normalize_by: tuple[str, str] | None = None
    alpha: float = 0.01

    def regressions(self, fail_above_pct: float) -> list[EntryComparison]:
        return [r for r in self.rows if r.regressed(fail_above_pct)]

    def exit_code(self, fail_above_pct: float | None) -> int:
        """1 when a gated entry is significantly slower by more than the threshold, else 0."""
        if fail_above_pct is None:
            return EXIT_OK
        return EXIT_REGRESSION if self.regressions(fail_above_pct) else EXIT_OK

    def counts(self) -> dict[str, int]:
        out = {FASTER: 0, SLOWER: 0, UNCHANGED: 0}
        for r in self.rows:
            if r.gated:
                out[r.verdict] += 1
        return out


# ---------------------------------------------------------------------------------------------
# samples, runtime options and the normalization reference

#: runtime options that change speed, their defaults, the backends they apply to, and a short label
RUNTIME_OPTIONS: dict[str, tuple[object, frozenset[str], str]] = {
    "half_mode": ("cast", frozenset({"torch", "torch-compile", "torchscript"}), "{}"),
    "channels_last": (False, frozenset({"torch", "torch-compile", "torchscript"}), "channels last"),
    "compile_mode": ("default", frozenset({"torch-compile"}), "mode {}"),
    "cuda_graphs": (False, frozenset({"torch-compile"}), "CUDA graphs"),
    "openvino_mode": ("sync", frozenset({"openvino"}), "{}"),
}


def variant(entry: Entry) -> str:
    """The backend with its non-default runtime options, e.g. ``torch-compile [channels last, CUDA graphs]``.

    Entries that share a key but not a variant ran differently: they are not the same measurement.
    """
    parts = []
    for name, (default, backends, label) in RUNTIME_OPTIONS.items():
        value = (entry.options or {}).get(name, default)
        if value == default or entry.backend not in backends or (name == "half_mode" and entry.precision == "fp32"):
            continue
        parts.append(label.format(value))
    return entry.backend + (f" [{', '.join(parts)}]" if parts else "")



def per_image_seconds(entry: Entry) -> np.ndarray:
    """Per-call seconds divided by images per call: comparable across batch/request counts."""
    images = entry.images_per_call or entry.batch_size
    return np.asarray(entry.samples_s, dtype=float) / images


def parse_reference(text: str) -> tuple[str, str]:
    """``MODEL[/BACKEND]`` -> (model, backend); the backend defaults to ``torch``."""
    model, _, backend = text.strip().partition("/")
    model, backend = model.strip(), (backend.strip() or DEFAULT_REFERENCE_BACKEND)
    if not model or "/" in backend:
        raise UserError(f"--normalize-by {text!r}: expected MODEL or MODEL/BACKEND, e.g. levit_128s/torch")
    return model, backend


def setting_of(entry: Entry) -> tuple:
    """What a reference entry must share with the entries it normalizes."""
    return (entry.device, entry.precision, entry.batch_size, entry.threads)


def _setting_text(setting: tuple) -> str:
    device, precision, batch, threads = setting
    return f"{device} {precision}, batch {batch}, {threads} threads"


def reference_speed(record: RunRecord, reference: tuple[str, str], setting: tuple) -> float:
    """Median images/s of the reference entry measured in ``record`` at ``setting``."""
    model, backend = reference
    for e in _ok_entries(record).values():
        if (e.model, e.backend) == reference and setting_of(e) == setting:
            return 1.0 / float(np.median(per_image_seconds(e)))
    raise UserError(
        f"--normalize-by {model}/{backend}: {_source(record)} has no successful {model}/{backend} entry at "
        f"{_setting_text(setting)} to normalize by (measure it in the same run)"
    )


# ---------------------------------------------------------------------------------------------
# matching and comparing


def _source(record: RunRecord) -> str:
    return record.source or "(unsaved results)"


def _ok_entries(record: RunRecord) -> dict[tuple, Entry]:
    """Successful entries by key; a later duplicate replaces an earlier one."""
    return {e.key: e for e in record.results if e.status == "ok" and e.samples_s}


def _all_entries(record: RunRecord) -> dict[tuple, Entry]:
    out: dict[tuple, Entry] = {}
    for e in record.results:
        if e.key not in out or e.status == "ok":
            out[e.key] = e
    return out


def _verdict(ratio: float, significant: bool) -> str:
    if not significant:
        return UNCHANGED
    return FASTER if ratio > 1.0 else SLOWER


def compare_entries(base: Entry, new: Entry, alpha: float = 0.01,
                    base_scale: float = 1.0, new_scale: float = 1.0) -> EntryComparison:
    """Test ``new`` against ``base`` on their raw samples.

    ``*_scale`` multiplies each side's per-image seconds (a reference's median images/s when
    normalizing), so the test runs on speeds relative to the reference.
    """
    c = compare_samples(per_image_seconds(base) * base_scale, per_image_seconds(new) * new_scale, alpha=alpha)
    return EntryComparison(
        base=base, new=new, change_pct=(c.speed_ratio - 1.0) * 100.0, ratio_ci95=tuple(c.ratio_ci95),
        p_value=c.p_value, significant=c.significant, verdict=_verdict(c.speed_ratio, c.significant),
    )


def _unmatched(base: RunRecord, new: RunRecord) -> list[str]:
    """Entries that are not ok in both files, each with why (never dropped silently)."""
    b_all, n_all = _all_entries(base), _all_entries(new)
    lines = []
    for key in list(b_all) + [k for k in n_all if k not in b_all]:
        b, n = b_all.get(key), n_all.get(key)
        if b is None or n is None:
            e = b or n
            why = "" if e.status == "ok" else f" ({e.status}: {e.reason})"
            lines.append(f"only in {'new' if b is None else 'base'}: {e.label()}{why}")
            continue
        lines += [f"{side} {e.status}: {e.label()}: {e.reason}" for side, e in (("base", b), ("new", n))
                  if e.status != "ok"]
    return lines


def _describe(record: RunRecord) -> str:
    entries = list(_ok_entries(record).values())
    if not entries:
        return "no successful entries"
    pick = lambda attr: ",".join(sorted({str(getattr(e, attr)) for e in entries}))  # noqa: E731
    return (f"models {pick('model')}; backends {pick('backend')}; {pick('device')} {pick('precision')}; "
            f"batch {pick('batch_size')}; threads {pick('threads')}")


def compare_runs(base: RunRecord, new: RunRecord, normalize_by: str | None = None,
                 alpha: float = 0.01) -> CompareResult:
    """Compare every entry measured successfully in both runs (matched on model, backend, device,
    precision, batch size and threads).  No entry in common is a UserError."""
    b_ok, n_ok = _ok_entries(base), _ok_entries(new)
    keys = [k for k in b_ok if k in n_ok]
    if not keys:
        raise UserError(
            f"no entry was measured successfully in both {_source(base)} and {_source(new)}; "
            f"base: {_describe(base)}; new: {_describe(new)}"
        )
    reference = parse_reference(normalize_by) if normalize_by else None
    rows = [_compare_key(base, new, b_ok[k], n_ok[k], reference, alpha) for k in keys]
    warnings = [f"runtime options differ: {b_ok[k].label()}: base {variant(b_ok[k])}, new {variant(n_ok[k])}"
                for k in keys if variant(b_ok[k]) != variant(n_ok[k])]
    return CompareResult(_source(base), _source(new), rows, _unmatched(base, new), warnings, reference, alpha)


def _compare_key(base: RunRecord, new: RunRecord, b: Entry, n: Entry,
                 reference: tuple[str, str] | None, alpha: float) -> EntryComparison:
    if reference is None:
        return compare_entries(b, n, alpha)
    b_ref = reference_speed(base, reference, setting_of(b))
    n_ref = reference_speed(new, reference, setting_of(n))
    row = compare_entries(b, n, alpha, base_scale=b_ref, new_scale=n_ref)
    row.base_relative = float(b.images_per_second or 0.0) / b_ref
    row.new_relative = float(n.images_per_second or 0.0) / n_ref
    if (b.model, b.backend) == reference:
        row.gated, row.verdict = False, REFERENCE
    return row


def compare_files(base_path: str | os.PathLike, new_path: str | os.PathLike, normalize_by: str | None = None,
                  alpha: float = 0.01) -> CompareResult:
    """Load both files (UserError when unreadable or of another schema) and compare them."""
    return compare_runs(load(base_path), load(new_path), normalize_by, alpha)


# ---------------------------------------------------------------------------------------------
# output


def _fmt_ips(v: float) -> str:
    return f"{v:,.0f}" if v >= 10_000 else f"{v:,.1f}"


def _fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _cells(r: EntryComparison, normalized: bool) -> list[str]:
    e = r.base
    cells = [e.model, e.backend, f"{e.device} {e.precision}", str(e.batch_size), str(e.threads),
             _fmt_ips(r.base_ips), _fmt_ips(r.new_ips)]
    if normalized:
        cells += [f"{r.base_relative:.3f}", f"{r.new_relative:.3f}"]
    lo, hi = r.ratio_ci95
    cells += [f"{r.change_pct:+.1f}%", f"{(lo - 1) * 100:+.1f}% … {(hi - 1) * 100:+.1f}%", _fmt_p(r.p_value), r.verdict]
    return cells


def _headers(result: CompareResult) -> list[str]:
    cols = ["model", "backend", "device", "batch", "threads", "base img/s", "new img/s"]
    if result.normalize_by:
        ref = "/".join(result.normalize_by)
        cols += [f"base ×{ref}", f"new ×{ref}"]
    return cols + ["change", "95% CI", "p", "verdict"]


def summary_line(result: CompareResult, fail_above_pct: float | None) -> str:
    """One line: how many entries got which verdict, and the gate's decision."""
    c = result.counts()
    text = f"{c[SLOWER]} slower, {c[FASTER]} faster, {c[UNCHANGED]} no significant change (alpha {result.alpha:g})"
    if result.normalize_by:
        text += f"; speeds relative to {'/'.join(result.normalize_by)} in the same run"
    if fail_above_pct is None:
        return text
    bad = result.regressions(fail_above_pct)
    if not bad:
        return text + f"; gate --fail-above {fail_above_pct:g}%: pass"
    worst = ", ".join(f"{r.base.model}/{r.base.backend} batch {r.base.batch_size} {r.change_pct:+.1f}%" for r in bad)
    return text + f"; gate --fail-above {fail_above_pct:g}%: FAIL ({worst})"


def comparison_markdown(result: CompareResult, fail_above_pct: float | None = None) -> str:
    """The comparison as a Markdown table (for CI job summaries and pull-request comments)."""
    head = _headers(result)
    lines = [f"Comparing `{result.new_source}` (new) against `{result.base_source}` (base).", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in result.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r, bool(result.normalize_by))) + " |")
    lines += ["", summary_line(result, fail_above_pct)]
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {x}" for x in result.warnings]
    if result.not_compared:
        lines += ["", "Not compared:", ""] + [f"- {x}" for x in result.not_compared]
    return "\n".join(lines) + "\n"


VERDICT_STYLE = {FASTER: "green", SLOWER: "red", UNCHANGED: "dim", REFERENCE: "cyan"}


def comparison_table(result: CompareResult):
    """The comparison as a rich Table."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{result.new_source} (new) vs {result.base_source} (base)", title_justify="left")
    for col in _headers(result):
        t.add_column(col, justify="left" if col in ("model", "backend", "device", "verdict") else "right")
    for r in result.rows:
        cells = [escape(c) for c in _cells(r, bool(result.normalize_by))]
        style = VERDICT_STYLE[r.verdict]
        cells[-1] = f"[{style}]{cells[-1]}[/]"
        t.add_row(*cells)
    return t


# ---------------------------------------------------------------------------------------------
# command line


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--fail-above must be a percentage ≥ 0, got {text!r}")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--alpha must be between 0 and 1, got {text!r}")
    return value


def compare_parser():
    from .cli import Parser

    p = Parser(prog="levit-bench compare",
               description="Compare two results files entry by entry with a significance test on the raw samples. "
               "Exit 1 only for a significant slowdown above --fail-above; 2 for unreadable or incompatible files.")
    p.add_argument("base", help="baseline results file (JSON)")
    p.add_argument("new", help="new results file (JSON)")
    p.add_argument("--fail-above", type=_percent, default=None, metavar="PCT",
                   help="exit 1 when an entry is slower by more than PCT percent and the slowdown is significant")
    p.add_argument("--normalize-by", default=None, metavar="MODEL[/BACKEND]",
                   help="compare speeds relative to this entry measured in the same run "
                   "(same device, precision, batch, threads; backend default torch), e.g. levit_128s/torch")
    p.add_argument("--alpha", type=_alpha, default=0.01, help="significance level of the U test (default 0.01)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table instead of the terminal table")
    return p


def cmd_compare(argv: Sequence[str]) -> int:
    """``levit-bench compare BASE NEW``: print the comparison; the exit code is the gate."""
    args = compare_parser().parse_args(argv)
    result = compare_files(args.base, args.new, args.normalize_by, args.alpha)
    if args.markdown:
        sys.stdout.write(comparison_markdown(result, args.fail_above))
        return result.exit_code(args.fail_above)
    from rich.markup import escape

    from . import render

    out = render.console()
    out.print(comparison_table(result))
    for line in result.warnings:
        out.print(f"[yellow]warning: {escape(line)}[/]")
    for line in result.not_compared:
        out.print(f"[dim]not compared: {escape(line)}[/]")
    code = result.exit_code(args.fail_above)
    style = "red" if code == EXIT_REGRESSION else "default"
    out.print(f"[{style}]{escape(summary_line(result, args.fail_above))}[/]")
    return code
