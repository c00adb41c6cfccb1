"""The latency-under-load section (issue 22): per machine, the latency–throughput plot (p99 against
achieved rate, one line per model × runtime, the SLO drawn) and the table of the peak rate under
the SLO, from the ``load`` records of ``levit-bench load`` files."""
from __future__ import annotations

import io
from collections.abc import Sequence

from ..load_record import LoadRecord
from ..present import fmt_ips, fmt_percentile, fmt_rate, md_table
from ..spec import threads_text
from .merge import Machine, command_of


def machine_load(machine: Machine) -> list[LoadRecord]:
    """The machine's load records, the newest of each (model, variant, conditions, scenario)."""
    latest: dict[tuple, LoadRecord] = {}
    for r in sorted((x for rec in machine.records for x in rec.load), key=lambda x: x.measured_at):
        if r.ok or r.key not in latest:
            latest[r.key] = r
    return list(latest.values())


def curves(records: Sequence[LoadRecord]) -> list[tuple[str, list[tuple[float, float]]]]:
    """(label, [(achieved rate, p99 ms), ...]) per server record with rate levels, sorted by rate."""
    out = []
    for r in records:
        if not r.ok or r.scenario != "server":
            continue
        pts = sorted((lv["achieved_rate"], r.p99_ms(lv)) for lv in r.levels
                     if lv.get("rate") and lv.get("achieved_rate") and r.p99_ms(lv) is not None)
        if pts:
            out.append((f"{r.model} · {r.variant}", pts))
    return out


def load_png(records: Sequence[LoadRecord], title: str) -> bytes | None:
    """p99 latency (log) against achieved requests/s, one line per model × runtime; each SLO searched
    for drawn as a dashed line.  None when no server record has rate levels."""
    lines = curves(records)
    if not lines:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, pts in lines:
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
    for slo in sorted({r.slo_p99_ms for r in records if r.slo_p99_ms}):
        ax.axhline(slo, linestyle="--", color="black", linewidth=0.8)
        ax.annotate(f"SLO p99 {slo:g} ms", (0, slo), xycoords=("axes fraction", "data"), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("achieved requests/s (open-loop Poisson arrivals)")
    ax.set_ylabel("p99 latency, ms (from scheduled arrival)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def load_section(machine: Machine, records: Sequence[LoadRecord], plot_name: str | None) -> str:
    """The section's Markdown: the plot (when there is one), the peak rate under the SLO per model ×
    runtime with the bracket the search proved, single-stream and offline figures."""
    lines = [f"## Latency under load · {machine.title}", ""]
    if plot_name:
        lines += [f"![p99 latency against achieved rate]({plot_name})", "",
                  "p99 latency from each request's scheduled arrival (open loop: no coordinated omission) against "
                  "the achieved rate; dashed: the SLO searched for.", ""]
    server = [r for r in records if r.ok and r.scenario == "server"]
    if server:
        rows = []
        for r in server:
            s = r.search or {}
            met, failed = s.get("met") or {}, s.get("failed") or {}
            rows.append([r.model, r.variant, f"{r.device} {r.precision}, batch {r.batch_size}, "
                         f"{threads_text(r.threads)}", f"{r.slo_p99_ms:g}" if r.slo_p99_ms else "—",
                         fmt_rate(r.peak_rate), _side(met), _side(failed),
                         ("yes" if s.get("proven") else "no") if s else "—"])
        lines += [md_table(["model", "backend", "setting", "SLO p99 ms", "peak rate/s", "last met (p99 ms [95%])",
                            "first missed", "proven"], rows), ""]
    single = [r for r in records if r.ok and r.scenario == "single-stream"]
    if single:
        rows = [[r.model, r.variant, str(r.levels[0]["requests"]), fmt_percentile(r.levels[0], "p50"),
                 fmt_percentile(r.levels[0], "p90"), fmt_percentile(r.levels[0], "p99"),
                 "; ".join(_early(e) for e in r.early_stopping or [])] for r in single]
        lines += ["Single-stream (one request at a time, batch 1):", "",
                  md_table(["model", "backend", "requests", "p50 ms [95%]", "p90 ms [95%]", "p99 ms [95%]",
                            "early stopping (99%)"], rows), ""]
    offline = [r for r in records if r.ok and r.scenario == "offline" and r.best_level is not None]
    if offline:
        rows = [[r.model, r.variant, str(r.batch_size), str(r.levels[r.best_level]["concurrency"]),
                 fmt_ips(r.levels[r.best_level].get("images_per_second"))] for r in offline]
        lines += ["Offline (everything queued; the best concurrency per batch size):", "",
                  md_table(["model", "backend", "batch", "workers", "images/s"], rows), ""]
    failed = [r for r in records if not r.ok]
    lines += [f"- {r.status}: {r.label()} ({r.scenario}): {r.reason}" for r in failed]
    commands = sorted({command_of(rec) for rec in machine.records if rec.load})
    lines += ["", "Source: " + "; ".join(f"`{c}`" for c in commands) + ".", ""]
    return "\n".join(lines)


def _side(side: dict) -> str:
    if not side:
        return "—"
    lo, hi = side.get("p99_ci95_ms") or [None, None]
    p99 = "unsustainable" if side.get("unsustainable") else fmt_percentile(
        {"latency": {"p99": {"ms": side.get("p99_ms"), "ci95_ms": [lo, hi]}}}, "p99")
    return f"{fmt_rate(side.get('rate'))}/s ({p99})"


def _early(e: dict) -> str:
    if not e.get("enough"):
        return f"p{e['pct']:g}: {e['n']} < {e['min_requests']} requests"
    return f"p{e['pct']:g} ≤ {e['bound_ms']:.3g}"
