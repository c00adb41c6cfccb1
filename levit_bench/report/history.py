"""A history's plots: a PNG (matplotlib) and a self-contained interactive HTML page (plotly).

Both plot each entry's figure relative to the median of its own series (so entries of very
different speeds share one axis and a 15% step looks the same on every entry), one panel per
machine, files in time order along x labelled by their commit, change points marked.

The HTML page is plotly with plotly.js inlined (``include_plotlyjs=True``, about 4.5 MB): it opens
from a file, in a CI artifact or on a results branch, with no network; hovering shows each point's
images/s, figure, commit, time and file, and clicking an entry in the legend hides or shows it (its
change points with it).  A hand-written SVG would be smaller, but hover, zoom and toggles come
with plotly, maintained.
"""
from __future__ import annotations

import html
import io

import numpy as np

from ..history import History, MachineHistory, Series

CHANGE_STYLE = {"slower": "#c0392b", "faster": "#27ae60"}


def _relative(s: Series) -> list[float]:
    median = float(np.median([p.ips for p in s.points]))
    return [p.ips / median for p in s.points]


def _ticks(m: MachineHistory) -> list[str]:
    return [f"{f.position + 1}: {f.commit}" for f in m.files]


def history_png(h: History) -> bytes:
    """The history as a PNG: one panel per machine, one line per entry, change points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(h.machines), 1, figsize=(11, 4.5 * len(h.machines)), squeeze=False)
    for ax, m in zip(axes[:, 0], h.machines):
        for s in m.series:
            x = [p.file.position for p in s.points]
            (line,) = ax.plot(x, _relative(s), marker="o", markersize=3, linewidth=1,
                              label=f"{s.label} ({s.figure})")
            for cp in s.change_points:
                ax.axvline(cp.after.position - 0.5, color=CHANGE_STYLE["slower" if cp.slowdown else "faster"],
                           linestyle=":", linewidth=1)
                y = _relative(s)[[p.file for p in s.points].index(cp.after)]
                ax.annotate(f"{cp.step_pct:+.1f}%", (cp.after.position, y), color=line.get_color(), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xticks(range(len(m.files)), _ticks(m), rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("images/s over the entry's median")
        ax.set_title(f"{m.machine}: {len(m.files)} files, {len(m.series)} entries", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        if len(m.series) <= 24:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(m: MachineHistory):
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in m.series:
        rel = _relative(s)
        custom = [[p.ips, p.file.commit, p.file.created.isoformat(), p.file.source] for p in s.points]
        fig.add_trace(go.Scatter(
            x=[p.file.position for p in s.points], y=rel, mode="lines+markers", name=f"{s.label} ({s.figure})",
            legendgroup=s.label, customdata=custom,
            hovertemplate=(f"<b>{html.escape(s.label)}</b><br>%{{customdata[0]:.4g}} images/s ({s.figure})"
                           "<br>%{y:.3f}× the entry's median<br>commit %{customdata[1]}<br>%{customdata[2]}"
                           "<br>%{customdata[3]}<extra></extra>")))
        if s.change_points:
            at = [[p.file for p in s.points].index(cp.after) for cp in s.change_points]
            fig.add_trace(go.Scatter(
                x=[cp.after.position for cp in s.change_points], y=[rel[i] for i in at], mode="markers+text",
                name=f"change: {s.label}", legendgroup=s.label, showlegend=False,
                text=[f"{cp.step_pct:+.1f}%" for cp in s.change_points], textposition="top center",
                marker={"symbol": "x", "size": 14,
                        "color": [CHANGE_STYLE["slower" if cp.slowdown else "faster"] for cp in s.change_points]},
                hovertext=[f"{s.label}: {cp.words()} (z {cp.z:+.1f})" for cp in s.change_points],
                hoverinfo="text"))
    fig.update_layout(title=f"{m.machine}: {len(m.files)} files", height=560, hovermode="closest",
                      xaxis={"tickmode": "array", "tickvals": list(range(len(m.files))), "ticktext": _ticks(m),
                             "title": "results file (time order): commit"},
                      yaxis={"title": "images/s over the entry's median"}, legend={"font": {"size": 10}})
    return fig


def history_html(h: History, title: str = "levit-bench history") -> str:
    """The history as one HTML page that needs no network: plotly.js inlined once, one plot per
    machine, a table of the files and one of the change points."""
    parts = []
    for i, m in enumerate(h.machines):
        parts.append(_figure(m).to_html(full_html=False, include_plotlyjs=(i == 0),
                                        config={"displaylogo": False, "responsive": True}))
        parts.append(_files_table(m, h))
    changes = [(m, s, cp) for m in h.machines for s in m.series for cp in s.change_points]
    rows = "".join(f"<tr><td>{html.escape(m.machine)}</td><td>{html.escape(s.label)}</td><td>{s.figure}</td>"
                   f"<td>{cp.step_pct:+.1f}%</td><td>{html.escape(cp.before.commit)} → {html.escape(cp.after.commit)}"
                   f"</td><td>{'new' if m.is_newest(s, cp, h.newest) else ''}</td></tr>" for m, s, cp in changes)
    table = ("<h2>Change points</h2><table><tr><th>machine</th><th>entry</th><th>figure</th><th>step</th>"
             f"<th>commits</th><th></th></tr>{rows}</table>" if changes else "<h2>Change points</h2><p>none</p>")
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}{table}</body></html>\n")


def _files_table(m: MachineHistory, h: History) -> str:
    libs = h.shown_versions()
    head = "".join(f"<th>{html.escape(lib)}</th>" for lib in libs)
    rows = "".join(f"<tr><td>{f.position + 1}</td><td>{f.created.isoformat()}</td><td>{html.escape(f.commit)}</td>"
                   + "".join(f"<td>{html.escape(str(f.versions.get(lib)))}</td>" for lib in libs)
                   + f"<td>{html.escape(f.source)}</td></tr>" for f in m.files)
    return f"<table><tr><th>#</th><th>created</th><th>commit</th>{head}<th>file</th></tr>{rows}</table>"
