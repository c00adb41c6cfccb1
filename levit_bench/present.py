"""How numbers are shown, in the terminal and in Markdown alike: formats, tables, "× torch".

One definition of each, so the terminal table, the report and ``compare`` never disagree about the
same entries.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .results import Entry
from .spec import BASELINE_BACKEND, Conditions
from .stats import Ratio, can_pair, paired_ratio, ratio_of_medians, unpaired_ratio

NOISE_MARK = "⚠"


def speed_ratio(a: Entry, b: Entry, same_run: bool, interval: bool = True) -> Ratio:
    """Speed of ``a`` over speed of ``b``, with a 95% interval (``interval=False``: the value only,
    the interval set to it, for table cells that show no interval).

    Entries of one run timed in the same group are paired round by round (``stats.paired_ratio``:
    the machine's drift cancels); otherwise the ratio of medians with the interval spanned by both
    sides' order-statistic intervals of round medians (``stats.unpaired_ratio``, as ``compare``)."""
    ra, rb = a.timing.per_image_rounds(), b.timing.per_image_rounds()
    if same_run and a.group == b.group and can_pair(ra, rb):
        return paired_ratio(ra, rb)
    if not interval:
        value = ratio_of_medians(ra, rb)
        return Ratio(value, (value, value), False, min(len(ra), len(rb)))
    return unpaired_ratio(ra, rb)


def fmt_ips(v: float | None) -> str:
    """Images/s: no decimals from 10,000 up, one below; a dash for none."""
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 10_000 else f"{v:,.1f}"


def fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}×"


def fmt_efficiency(e: Entry | None) -> str:
    """Achieved GMAC/s and the fraction of the machine's measured peak: ``41.3 (12%)``."""
    x = e.explain if e is not None else None
    if x is None or x.gmacs_per_s is None:
        return "—"
    text = f"{x.gmacs_per_s:,.1f}" + (f" ({x.efficiency:.0%})" if x.efficiency is not None else "")
    adjusted = (e.timing.canary or {}).get("adjusted_efficiency") if e.timing else None
    return text + (f", adj {adjusted:.0%}" if adjusted is not None else "")


def fmt_intervals(e: Entry) -> str:
    """The adjusted speed (on-CPU share and canary, where there is one) and the two labelled intervals of the entry's
    figure: ``adj 61.2 (95% CI 58.0–64.1; rerun 55.3–67.0)``; empty for files without them."""
    iv = (e.timing.intervals if e.timing else None) or {}
    if not iv:
        return ""
    adjusted = e.timing.adjusted_images_per_second
    head = f"adj {fmt_ips(adjusted)} " if adjusted else "raw "
    (clo, chi), (rlo, rhi) = iv["confidence"]["images_per_second"], iv["rerun"]["images_per_second"]
    return head + f"(95% CI {fmt_ips(clo)}–{fmt_ips(chi)}; rerun {fmt_ips(rlo)}–{fmt_ips(rhi)})"


def most_efficient(entries: Iterable[Entry]) -> Entry | None:
    """The entry that reached the most GMAC/s (the model is the same, so: the fastest per image)."""
    return max((e for e in entries if e.explain and e.explain.gmacs_per_s is not None),
               key=lambda e: e.explain.gmacs_per_s, default=None)


def spread_pct(e: Entry) -> float:
    """IQR of images/s as a percentage of the median."""
    t = e.timing
    return (t.iqr or 0.0) / t.images_per_second * 100 if t and t.images_per_second else 0.0


def md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` holds one of l/r per column (default left)."""
    marks = [("---:" if (align[i:i + 1] == "r") else "---") for i in range(len(header))]
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Baselines:
    """The "× torch" of every entry: its speed over that of the ``torch`` entry of the same model at
    the same setting (device, precision, batch size, threads); plain torch first, else torch with
    runtime options.  Entries of one run are paired round by round (:func:`speed_ratio`);
    ``run_of`` tells which run an entry comes from (default: all from one)."""

    def __init__(self, entries: Iterable[Entry], run_of: Callable[[Entry], object] = lambda _e: None):
        self._run_of = run_of
        self._by: dict[tuple[str, Conditions], list[Entry]] = {}
        self._cache: dict[int, Ratio | None] = {}
        for e in entries:
            if e.backend == BASELINE_BACKEND and e.ok:
                self._by.setdefault((e.model, e.conditions), []).append(e)

    def baseline(self, e: Entry) -> Entry | None:
        found = self._by.get((e.model, e.conditions), [])
        return min(found, key=lambda b: b.variant != BASELINE_BACKEND, default=None)

    def ratio(self, e: Entry) -> Ratio | None:
        """Speed over the baseline's, with its interval; None without a baseline."""
        if id(e) not in self._cache:
            base = self.baseline(e)
            self._cache[id(e)] = None if base is None or not e.ok or not e.timing.samples_s or not base.timing.samples_s else \
                speed_ratio(e, base, self._run_of(e) == self._run_of(base), interval=False)
        return self._cache[id(e)]

    def speedup(self, e: Entry) -> float | None:
        r = self.ratio(e)
        return None if r is None else r.value

    def row_speedup(self, row: Iterable[Entry]) -> float | None:
        """For a table row spanning batch sizes: the speed-up at the largest batch that has one."""
        for e in sorted(row, key=lambda x: -x.batch_size):
            up = self.speedup(e)
            if up is not None:
                return up
        return None


# ---------------------------------------------------------------------------------------------
# latency under load (issue 22): one layout for the terminal and the report


def fmt_ms(ms: float | None) -> str:
    """Milliseconds to three significant figures; a dash for none."""
    return "—" if ms is None else f"{ms:.3g}"


def fmt_percentile(level: dict, name: str) -> str:
    """``14.2 [12.9, 16.0]`` ms: a level's percentile and its distribution-free 95% interval (a bound
    the level's requests are too few for is ``?``)."""
    p = (level.get("latency") or {}).get(name) or {}
    lo, hi = p.get("ci95_ms") or [None, None]
    if p.get("ms") is None:
        return "—"
    side = lambda v: "?" if v is None else fmt_ms(v)  # noqa: E731
    return f"{fmt_ms(p['ms'])} [{side(lo)}, {side(hi)}]"


def fmt_rate(rate: float | None) -> str:
    return "—" if rate is None else (f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}")


LEVEL_HEADER = ("offered/s", "workers", "achieved/s", "images/s", "p50 ms", "p90 ms [95%]", "p99 ms [95%]",
                "p99.9 ms", "mean batch", "max queue", "note")


def level_row(level: dict) -> list[str]:
    """One level of the latency–throughput curve as a table row (:data:`LEVEL_HEADER`)."""
    p = (level.get("latency") or {})
    note = level.get("unsustainable") or (f"{level['unserved']} unserved" if level.get("unserved") else "")
    return [fmt_rate(level.get("rate")) if level.get("rate") else "closed loop", str(level.get("concurrency", 1)),
            fmt_rate(level.get("achieved_rate")), fmt_ips(level.get("images_per_second")),
            fmt_ms((p.get("p50") or {}).get("ms")), fmt_percentile(level, "p90"), fmt_percentile(level, "p99"),
            fmt_ms((p.get("p99.9") or {}).get("ms")),
            "—" if level.get("mean_batch") is None else f"{level['mean_batch']:.2f}", str(level.get("max_queue", 0)),
            note]


# ---------------------------------------------------------------------------------------------
# the end-to-end JPEG path (issue 24): one table layout for the terminal and the report

#: the stage columns, in path order (``copy`` only where some entry has it: CUDA)
E2E_STAGE_LABELS = {"read": "read", "decode": "decode", "transform": "transform", "batch": "batch",
                    "copy": "H2D copy", "inference": "inference", "top5": "top-5"}


def _e2e_stages(entries: Sequence[Entry]) -> list[str]:
    return [h for h in E2E_STAGE_LABELS if any(h in r["stages"] for e in entries if e.end_to_end
                                                for r in e.end_to_end["serial"])]


def end_to_end_tables(entries: Sequence[Entry]) -> list[tuple[list[str], list[list[str]]]]:
    """Two (header, rows) tables, one row per entry with an end-to-end part and per decoder:
    compute-only next to the serial path and the best overlapped pipeline (decode + inference
    threads), its per-image latency and what bounds it; then each serial stage's mean ms per image,
    what they add up to (share of the mean serial call) and the serial call's median ms per image."""
    stages = _e2e_stages(entries)
    speed, parts = [], []
    for e in entries:
        if not e.end_to_end:
            continue
        for s in e.end_to_end["serial"]:
            pipes = [p for p in e.end_to_end["pipeline"] if p["decoder"] == s["decoder"]]
            p = max(pipes, key=lambda r: r["images_per_second"]) if pipes else None
            lat = p["latency_ms"] if p else {}
            head = [e.model, e.variant, str(e.batch_size)]
            speed.append(head + [fmt_ips(e.timing.images_per_second if e.timing else None), s["decoder"],
                                 f"{fmt_ips(s['images_per_second'])} [{fmt_ips(s['ci95'][0])}–{fmt_ips(s['ci95'][1])}]",
                                 (f"{fmt_ips(p['images_per_second'])} [{fmt_ips(p['ci95'][0])}–{fmt_ips(p['ci95'][1])}] "
                                  f"({p['decode_threads']}+{p['inference_threads']})") if p else "",
                                 f"{fmt_ms((lat.get('p50') or {}).get('ms'))}/{fmt_ms((lat.get('p99') or {}).get('ms'))}"
                                 if p else "", p["bounding_stage"] if p else ""])
            parts.append(head + [s["decoder"]] + [f"{s['stages'][k]['ms_per_image']:.2f}" if k in s["stages"] else ""
                                                  for k in stages]
                         + [f"{s['stages_sum_ratio']:.2%}" if s.get("stages_sum_ratio") else "",
                            f"{s['ms_per_image']:.2f}"])
    return [(["model", "backend", "batch", "compute img/s", "decoder", "serial img/s [95% CI]",
              "pipeline img/s [95% CI] (threads)", "p50/p99 ms", "bound"], speed),
            (["model", "backend", "batch", "decoder"] + [E2E_STAGE_LABELS[k] for k in stages]
             + ["Σ / mean call", "median call"], parts)]


def e2e_ratio(a: dict, b: dict, paired: bool) -> Ratio:
    """Speed of end-to-end record ``a`` over ``b`` (two ``end_to_end`` serial or pipeline records),
    like :func:`speed_ratio`: paired round by round when both were timed in one group's rounds."""
    from .stats import split_rounds

    ra, rb = ([r / x["images_per_call"] for r in split_rounds(x["samples_s"], x["calls"])] for x in (a, b))
    return paired_ratio(ra, rb) if paired and can_pair(ra, rb) else unpaired_ratio(ra, rb)
