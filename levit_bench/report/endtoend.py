"""The end-to-end section (issue 24): per machine with ``run --input jpeg`` entries, the headline
pairs' compute-only speed next to their JPEG-to-label speed per runtime, whether LeViT's lead
survives the JPEG path (computed from the figures and their intervals), a stacked bar of where an
image's time goes in the serial path, the decoders' checks and every entry's table."""
from __future__ import annotations

import io
from collections.abc import Sequence

from .. import paper
from ..e2e_record import STAGES, best
from ..present import E2E_STAGE_LABELS, e2e_ratio, end_to_end_tables, fmt_ips, fmt_ratio, md_table, speed_ratio
from .merge import Machine, Sourced

#: stacked-bar colours per stage (inference dark: the part compute-only figures show)
STAGE_COLOURS = {"read": "#c7e9c0", "decode": "#74c476", "transform": "#fdae6b", "batch": "#bcbddc",
                 "copy": "#9e9ac8", "inference": "#3f007d", "top5": "#fcbba1"}


def machine_e2e(machine: Machine) -> list[Sourced]:
    """The machine's measured entries with an end-to-end part."""
    return [s for s in machine.ok() if s.entry.end_to_end and s.entry.end_to_end.get("serial")]


def _pair_rows(found: Sequence[Sourced]) -> tuple[list[list[str]], list[str]]:
    """Per headline pair and runtime measured end to end: the compute-only lead and the end-to-end
    lead (each model's best overlapped pipeline, else its serial path), and one sentence each."""
    rows, words = [], []
    for levit, effnet in paper.HEADLINE_PAIRS:
        for a in (s for s in found if s.entry.model in (levit, levit + "_conv")):
            for b in (s for s in found if s.entry.model == effnet and s.entry.variant == a.entry.variant
                      and s.entry.conditions == a.entry.conditions):
                same = a.record is b.record and a.entry.group == b.entry.group
                ea, eb = a.entry.end_to_end, b.entry.end_to_end
                pa = best(ea["pipeline"]) or best(ea["serial"])
                pb = best(eb["pipeline"]) or best(eb["serial"])
                if pa is None or pb is None:
                    continue
                compute = speed_ratio(a.entry, b.entry, same_run=same)
                e2e = e2e_ratio(pa, pb, paired=same)
                rows.append([f"{a.entry.model} vs {effnet}", a.entry.variant, str(a.entry.batch_size),
                             f"{fmt_ips(a.entry.timing.images_per_second)} / {fmt_ips(b.entry.timing.images_per_second)}",
                             _ratio(compute), f"{fmt_ips(pa['images_per_second'])} / {fmt_ips(pb['images_per_second'])}",
                             _ratio(e2e)])
                words.append(lead_words(a.entry.model, effnet, a.entry.variant, compute, e2e))
    return rows, words


def _ratio(r) -> str:
    return f"{fmt_ratio(r.value)} [{r.ci95[0]:.2f}, {r.ci95[1]:.2f}]{' paired' if r.paired else ''}"


def lead_words(levit: str, effnet: str, runtime: str, compute, e2e) -> str:
    """Whether LeViT's lead over EfficientNet survives the JPEG path, from the two ratios' intervals."""
    head = f"On {runtime}, {levit} over {effnet}: {fmt_ratio(compute.value)} compute-only, {fmt_ratio(e2e.value)} from JPEG to label"
    if compute.value > 1:
        kept = (e2e.value - 1) / (compute.value - 1)
        head += f" ({kept:.0%} of the compute-only lead kept)"
    if e2e.ci95[0] > 1:
        return head + ": the lead survives the JPEG path (the interval is above 1)."
    if e2e.ci95[1] < 1:
        return head + ": the lead reverses on the JPEG path (the interval is below 1)."
    return head + ": the lead does not clearly survive the JPEG path (the interval includes 1)."


def stages_png(found: Sequence[Sourced], title: str) -> bytes | None:
    """Horizontal stacked bars, one per entry and decoder: each serial stage's mean ms per image;
    a tick marks the compute-only (median) time per image."""
    bars = [(f"{s.entry.model} · {s.entry.variant} · b{s.entry.batch_size} · {r['decoder']}", r["stages"],
             1000.0 / s.entry.timing.images_per_second) for s in found for r in s.entry.end_to_end["serial"]]
    if not bars:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.6, 1.2 + 0.45 * len(bars)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for y, (_label, stages, compute_ms) in enumerate(bars):
        left = 0.0
        for name in STAGES:
            if name in stages:
                w = stages[name]["ms_per_image"]
                ax.barh(y, w, left=left, color=STAGE_COLOURS[name], edgecolor="white", linewidth=0.5,
                        label=E2E_STAGE_LABELS[name] if y == 0 else None)
                left += w
        ax.plot([compute_ms], [y], marker="|", markersize=14, color="black", label="compute-only" if y == 0 else None)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per image (serial path, stage means: they add up to the mean call)")
    ax.set_title(title, fontsize=9)
    fig.legend(fontsize=7, ncol=4, loc="outside lower center")
    ax.grid(True, axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def e2e_section(machine: Machine, found: Sequence[Sourced], plot_name: str | None) -> str:
    """The section's Markdown (docs/end-to-end.md says what each stage holds)."""
    first = found[0].entry.end_to_end
    inp = first["input"]
    source = (f"the generated photo-like set ({inp['images']} JPEGs at ImageNet's sizes and qualities, "
              "docs/end-to-end.md)" if inp["source"] == "generated" else f"{inp['images']} JPEGs of `{inp.get('root')}`")
    skipped = f"; {inp['skipped']} files skipped (not JPEG or unreadable)" if inp["skipped"] else ""
    lines = [f"## From JPEG to label · {machine.title}", "",
             f"The timed call read → decode → the model's eval transform → batch → inference → top-5, on {source}"
             f"{skipped}, "
             "timed in the same rounds as the compute-only call (a ready tensor). End-to-end speed: the best "
             "overlapped pipeline (decode worker threads feeding inference) of each entry.", ""]
    rows, words = _pair_rows(found)
    if rows:
        lines += [md_table(["pair", "backend", "batch", "compute-only img/s (LeViT / EffNet)", "lead [95% CI]",
                            "end-to-end img/s (LeViT / EffNet)", "lead [95% CI]"], rows), ""]
        lines += [f"- {w}" for w in words] + [""]
    if plot_name:
        lines += [f"![where an image's time goes]({plot_name})", "",
                  "Where an image's time goes in the serial path (stage means, ms per image); the tick is the "
                  "compute-only median time per image.", ""]
    for (header, table_rows), caption in zip(end_to_end_tables([s.entry for s in found]),
                                             ("Every entry (pipeline threads: decode+inference):",
                                              "Serial stages, mean ms per image (Σ: their sum over the mean serial call; "
                                              "every call is the sum of its stages), and the median call:")):
        lines += [caption, "", md_table(header, table_rows), ""]
    checks = [[name, str(c.get("max_abs_diff", "—")), str(c.get("tolerance", "—")), "yes" if c.get("accepted") else
               f"no: {c.get('reason')}"] for name, c in first["decoders"].items()]
    lines += ["Decoders checked against Pillow before timing (max absolute pixel difference, 8-bit levels):", "",
              md_table(["decoder", "max diff", "tolerance", "timed"], checks), ""]
    return "\n".join(lines)
