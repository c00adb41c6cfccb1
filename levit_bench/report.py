"""Markdown reports from one or more results files: tables, a paper table, a plot, the headline.

Results files from several machines merge into one report, one section per machine.  Nothing is
dropped silently: entries that failed or were skipped are listed with their reasons, and an entry
measured again in a later file lists the one it replaced.  Each figure names the results files it
comes from and the command that regenerates them (``config.argv`` in each file).
"""
from __future__ import annotations

import io
import math
import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import zoo
from .atomic import atomic_write_bytes, atomic_write_text
from .errors import UserError
from .gate import per_image_seconds, variant
from .results import Entry, RunRecord, load, threads_text
from .stats import compare_samples

BASELINE_BACKEND = "torch"
PAPER_CPU_SETTING = ("fp32", 1, 16)  # precision, threads, batch size of the paper's CPU protocol
#: the paper's headline pairs at matched accuracy: (LeViT, EfficientNet)
HEADLINE_PAIRS = (("levit_128s", "efficientnet_b0"), ("levit_192", "efficientnet_b2"), ("levit_256", "efficientnet_b3"))
FAMILY_LABELS = {"levit": "LeViT", "deit": "DeiT", "efficientnet": "EfficientNet", "graft": "graft", "timm": "timm"}
FAMILY_STYLE = {"levit": ("tab:red", "o"), "deit": ("tab:blue", "s"), "efficientnet": ("tab:green", "^"),
                "graft": ("tab:purple", "D"), "timm": ("tab:gray", "x")}


# ---------------------------------------------------------------------------------------------
# loading and grouping


@dataclass(eq=False)
class Sourced:
    """An entry with the results file it came from."""

    entry: Entry
    record: RunRecord

    @property
    def file(self) -> str:
        return self.record.source or "(unsaved results)"


@dataclass(eq=False)
class Machine:
    """Every results file recorded on one machine, merged."""

    title: str
    system: dict
    records: list[RunRecord] = field(default_factory=list)
    entries: list[Sourced] = field(default_factory=list)  # one per key: the newest successful one
    superseded: list[tuple[Sourced, Sourced]] = field(default_factory=list)  # (replaced, by)

    def ok(self) -> list[Sourced]:
        return [s for s in self.entries if s.entry.status == "ok" and s.entry.images_per_second]

    def devices(self) -> list[str]:
        return sorted({s.entry.device for s in self.entries})


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for the ``*.json`` files in it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise UserError(f"{p} is a folder with no results files (*.json) in it")
            out += found
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def load_results(paths: Iterable[str | os.PathLike]) -> list[RunRecord]:
    """Load every results file (UserError on the first unreadable one)."""
    paths = expand_paths(paths)
    if not paths:
        raise UserError("no results files given")
    return [load(p) for p in paths]


def machine_key(system: dict) -> tuple:
    """What identifies a machine across runs (the OS string changes with kernel updates, so not it)."""
    gpu = (system.get("gpu") or {}).get("name")
    return (system.get("hostname"), system.get("cpu"), system.get("physical_cores"), system.get("memory_bytes"), gpu)


def machine_title(system: dict) -> str:
    gpu = (system.get("gpu") or {}).get("name")
    host = system.get("hostname") or "unknown host"
    return f"{host}: {system.get('cpu', 'unknown CPU')}" + (f" + {gpu}" if gpu else "")


def group_by_machine(records: Sequence[RunRecord]) -> list[Machine]:
    """One Machine per distinct system; within it, files are merged oldest first."""
    machines: dict[tuple, Machine] = {}
    for rec in sorted(records, key=lambda r: r.created):
        m = machines.setdefault(machine_key(rec.system), Machine(machine_title(rec.system), rec.system))
        m.records.append(rec)
        _merge(m, rec)
    return list(machines.values())


def report_key(e: Entry) -> tuple:
    """An entry's identity in a report: its key with the runtime options that change speed."""
    return (*e.key, variant(e))


def describe(e: Entry) -> str:
    """``Entry.label`` naming the backend variant (``torch-compile [CUDA graphs]``)."""
    return f"{e.model} / {variant(e)} / {e.device} {e.precision} / batch {e.batch_size} / {threads_text(e.threads)}"


def _merge(machine: Machine, record: RunRecord) -> None:
    """Add ``record``'s entries; a newer entry replaces an older one unless it failed where that was ok."""
    index = {report_key(s.entry): i for i, s in enumerate(machine.entries)}
    for e in record.results:
        new = Sourced(e, record)
        i = index.get(report_key(e))
        if i is None:
            index[report_key(e)] = len(machine.entries)
            machine.entries.append(new)
            continue
        old = machine.entries[i]
        if e.status == "ok" or old.entry.status != "ok":
            machine.entries[i] = new
            machine.superseded.append((old, new))
        else:
            machine.superseded.append((new, old))


# ---------------------------------------------------------------------------------------------
# formatting


def fmt_ips(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 10_000 else f"{v:,.1f}"


def md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` holds one of l/r per column (default left)."""
    marks = [("---:" if (align[i:i + 1] == "r") else "---") for i in range(len(header))]
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_of(record: RunRecord) -> str:
    """The command that produced ``record`` (from ``config.argv``)."""
    argv = (record.config or {}).get("argv")
    if not isinstance(argv, list):
        return "(command not recorded)"
    return "levit-bench " + shlex.join(str(a) for a in argv) if argv else "levit-bench"


def sources_text(items: Iterable[Sourced]) -> str:
    """'From FILE (`levit-bench …`); …' for the files behind a figure."""
    records: dict[int, RunRecord] = {}
    for s in items:
        records.setdefault(id(s.record), s.record)
    if not records:
        return ""
    parts = [f"`{r.source or '(unsaved results)'}` (regenerate: `{command_of(r)}`)" for r in records.values()]
    return "Source: " + "; ".join(parts) + "."


def spec_of(model: str) -> zoo.ModelSpec | None:
    """The zoo spec, without importing timm for ``timm:`` names (they carry no published figures)."""
    if model.startswith("timm:"):
        return None
    try:
        return zoo.model_spec(model)
    except UserError:
        return None


def family_of(model: str) -> str:
    spec = spec_of(model)
    return spec.family if spec else "timm"


def base_model(model: str) -> str:
    """The conv layout of LeViT counts as the same model as the token layout."""
    stem = model.removesuffix("_conv")
    return stem if stem != model and stem in zoo.REGISTRY else model


# ---------------------------------------------------------------------------------------------
# the machine section


def system_table(machine: Machine) -> str:
    s = machine.system
    versions = s.get("versions") or {}
    gpu = s.get("gpu") or {}
    rows = [
        ("CPU", f"{s.get('cpu')} ({s.get('arch', '?')})"),
        ("cores", f"{s.get('physical_cores')} physical, {s.get('logical_cores')} logical"),
        ("memory", f"{(s.get('memory_bytes') or 0) / 2**30:.1f} GiB"),
        ("OS", s.get("os")),
        ("Python", s.get("python")),
    ]
    if s.get("cpu_flags"):
        rows.append(("CPU extensions", ", ".join(s["cpu_flags"])))
    if s.get("governor"):
        rows.append(("governor", s["governor"]))
    if gpu:
        mem = f", {gpu['memory_bytes'] / 2**30:.0f} GiB" if gpu.get("memory_bytes") else ""
        rows.append(("GPU", f"{gpu.get('name')}{mem}, driver {gpu.get('driver')}, CUDA {gpu.get('cuda')}"))
    rows.append(("libraries", ", ".join(f"{k} {v}" for k, v in versions.items() if v)))
    if s.get("git_commit"):
        rows.append(("levit-bench commit", s["git_commit"]))
    return md_table(["", ""], rows)


def files_table(machine: Machine) -> str:
    rows = []
    for r in machine.records:
        status = "complete" if r.complete else "**incomplete** (interrupted or still running)"
        rows.append((f"`{r.source or '(unsaved results)'}`", r.created, len(r.results), status, f"`{command_of(r)}`"))
    return md_table(["results file", "started", "entries", "status", "command"], rows)


def setting_groups(entries: Iterable[Sourced]) -> dict[tuple, list[Sourced]]:
    """Entries by (device, precision, threads): one table each."""
    groups: dict[tuple, list[Sourced]] = {}
    for s in entries:
        groups.setdefault((s.entry.device, s.entry.precision, s.entry.threads), []).append(s)
    return dict(sorted(groups.items(), key=lambda kv: kv[0]))


def _cell(e: Entry | None, baseline: Entry | None) -> str:
    if e is None:
        return ""
    if e.status != "ok" or not e.images_per_second:
        return e.status
    spread = (e.iqr or 0.0) / e.images_per_second * 100
    text = f"{fmt_ips(e.images_per_second)} ±{spread:.0f}%" + (" ⚠" if e.noisy else "")
    if baseline is not None and baseline is not e and baseline.status == "ok" and baseline.images_per_second:
        text += f" ({e.images_per_second / baseline.images_per_second:.2f}×)"
    return text


def _baseline(cells: dict[tuple, Entry], model: str, batch: int) -> Entry | None:
    """The ``torch`` entry a cell's speed-up is over: plain torch first, else torch with options."""
    found = [e for (m, v, n), e in cells.items() if (m, n) == (model, batch) and e.backend == BASELINE_BACKEND
             and e.status == "ok"]
    return min(found, key=lambda e: variant(e) != BASELINE_BACKEND, default=None)


def device_table(entries: Sequence[Sourced]) -> str:
    """Models as rows, backend (with options) × batch size as columns: images/s ± IQR, speed-up over torch."""
    models = list(dict.fromkeys(s.entry.model for s in entries))
    variants = list(dict.fromkeys(variant(s.entry) for s in entries))
    batches = sorted({s.entry.batch_size for s in entries})
    cells = {(s.entry.model, variant(s.entry), s.entry.batch_size): s.entry for s in entries}
    columns = [(v, n) for v in variants for n in batches if any(k[1:] == (v, n) for k in cells)]
    header = ["model"] + [f"{v} · batch {n}" for v, n in columns]
    rows = [[m] + [_cell(cells.get((m, v, n)), _baseline(cells, m, n)) for v, n in columns] for m in models]
    return md_table(header, rows, "l" + "r" * len(columns))


def device_section(setting: tuple, entries: Sequence[Sourced]) -> str:
    device, precision, threads = setting
    lines = [f"### {device} · {precision} · {threads_text(threads)}", "",
             device_table(entries), "",
             f"images/s: median ± IQR as % of the median; ⚠ noisy (IQR above 10%); (n×): speed-up over "
             f"`{BASELINE_BACKEND}` at the same batch size; [options]: runtime options other than the defaults.", "", sources_text(entries), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# paper figures against ours


def paper_throughput(pub: zoo.Published, device: str, arch: str | None) -> tuple[float | None, str]:
    """The paper's images/s on the hardware that matches ``device``, and that hardware in words."""
    if device == "cuda":
        return pub.gpu, f"V100, AMP fp16, batch {pub.gpu_batch}" if pub.gpu_batch else "V100, AMP fp16"
    if (arch or "").lower() in ("aarch64", "arm64"):
        return pub.arm, "Graviton2, 1 thread, batch 16"
    return pub.intel_cpu, "Xeon Gold 6138, 1 thread, batch 16"


def at_paper_setting(entries: Iterable[Sourced], device: str) -> Sourced | None:
    """Our fastest entry at the paper's protocol: CPU fp32, 1 thread, batch 16; GPU fp16 at the
    largest batch measured (the paper's "largest batch that fits")."""
    ok = [s for s in entries if s.entry.status == "ok" and s.entry.images_per_second]
    if device == "cuda":
        ok = [s for s in ok if s.entry.precision == "fp16"]
        largest = max((s.entry.batch_size for s in ok), default=None)
        return best_entry(s for s in ok if s.entry.batch_size == largest)
    return best_entry(s for s in ok if setting_key(s.entry) == PAPER_CPU_SETTING)


def best_entry(entries: Iterable[Sourced]) -> Sourced | None:
    ok = [s for s in entries if s.entry.status == "ok" and s.entry.images_per_second]
    return max(ok, key=lambda s: s.entry.images_per_second) if ok else None


def _top1(pub: zoo.Published) -> str:
    if pub.top1 is None:
        return "—"
    return f"{pub.top1:g}" + ("" if pub.top1_verified else "*")


def paper_rows(machine: Machine) -> list[list[str]]:
    """One row per measured model with published figures and device: paper and our best."""
    rows = []
    arch = machine.system.get("arch")
    for device in machine.devices():
        on_device = [s for s in machine.entries if s.entry.device == device]
        for model in dict.fromkeys(s.entry.model for s in on_device):
            spec = spec_of(model)
            if spec is None or spec.published is None:
                continue
            pub = spec.published
            paper, hardware = paper_throughput(pub, device, arch)
            mine = [s for s in on_device if s.entry.model == model]
            best, same = best_entry(mine), at_paper_setting(mine, device)
            e = best.entry if best else None
            rows.append([
                model, device, _top1(pub), f"{pub.params / 1e6:.1f}M" if pub.params else "—",
                f"{pub.flops_m:g}M" if pub.flops_m else "—", fmt_ips(paper), hardware,
                f"{fmt_ips(same.entry.images_per_second)} ({variant(same.entry)}, batch {same.entry.batch_size})"
                if same else "—",
                fmt_ips(e.images_per_second) if e else "not measured",
                variant(e) if e else "—",
                f"{e.precision}, batch {e.batch_size}, {threads_text(e.threads)}" if e else "—",
            ])
    return rows


def paper_section(machine: Machine) -> str:
    rows = paper_rows(machine)
    if not rows:
        return ""
    table = md_table(["model", "device", "top-1 (published)", "params", "FLOPs", "paper img/s", "paper hardware",
                      "ours at the paper's setting", "our best img/s", "backend", "our setting"], rows, "llrrrrlrrll")
    return "\n".join([
        "### Paper figures and ours", "", table, "",
        "\\* top-1 from the model's own paper, not verified against the LeViT paper's table. "
        "Ours at the paper's setting: on CPU fp32, 1 thread, batch 16; on GPU fp16 at the largest batch measured; "
        "fastest backend there. Our best: the fastest successful entry on this machine over every backend and setting.", "",
    ])


def problems_section(machine: Machine) -> str:
    """Failed and skipped entries with their reasons, and entries replaced by a later file."""
    lines = []
    bad = [s for s in machine.entries if s.entry.status != "ok"]
    if bad:
        lines += ["### Not measured", ""]
        lines += [f"- **{s.entry.status}**: {describe(s.entry)}: {s.entry.reason or '(no reason given)'} "
                  f"(`{s.file}`)" for s in bad]
        lines.append("")
    if machine.superseded:
        lines += ["### Measured more than once", ""]
        lines += [f"- {describe(old.entry)} ({old.entry.status}) in `{old.file}`: not shown; "
                  f"using `{kept.file}` ({kept.entry.status})" for old, kept in machine.superseded]
        lines.append("")
    return "\n".join(lines)


def machine_section(machine: Machine) -> str:
    parts = [f"## Machine {machine.title}", "", system_table(machine), "", files_table(machine), ""]
    groups = setting_groups(machine.entries)
    if not groups:
        parts += ["No entries in these files.", ""]
    parts += [device_section(setting, entries) for setting, entries in groups.items()]
    parts += [paper_section(machine), problems_section(machine)]
    return "\n".join(p for p in parts if p is not None)


# ---------------------------------------------------------------------------------------------
# settings: which (precision, threads, batch) a cross-model figure uses


def setting_key(e: Entry) -> tuple:
    return (e.precision, e.threads, e.batch_size)


def setting_words(setting: tuple, device: str) -> str:
    precision, threads, batch = setting
    paper = " (the paper's CPU protocol)" if device == "cpu" and setting == PAPER_CPU_SETTING else ""
    return f"{device} {precision}, {threads_text(threads)}, batch {batch}{paper}"


def choose_setting(coverage: dict[tuple, int], device: str) -> tuple | None:
    """The paper's CPU protocol when measured; else the setting covering most models, then the
    largest batch, then the fewest threads (closest to the paper's one)."""
    if not coverage:
        return None
    if device == "cpu" and PAPER_CPU_SETTING in coverage:
        return PAPER_CPU_SETTING
    return max(coverage, key=lambda s: (coverage[s], s[2], -s[1], s[0] == "fp32"))


# ---------------------------------------------------------------------------------------------
# the headline: LeViT against EfficientNet at matched accuracy


@dataclass
class Headline:
    """LeViT's measured speed-up over EfficientNet at one setting, next to the paper's."""

    machine: str
    device: str
    setting: tuple  # precision, threads, batch size
    levit: Sourced
    efficientnet: Sourced
    ratio: float  # LeViT images/s over EfficientNet images/s (ratio of medians)
    ratio_ci95: tuple[float, float]
    paper_ratio: float | None
    paper_hardware: str


def _best_at(entries: Iterable[Sourced], models: set[str], setting: tuple) -> Sourced | None:
    return best_entry(s for s in entries if s.entry.model in models and setting_key(s.entry) == setting)


def headline_for(machine: Machine, device: str, levit: str, effnet: str) -> Headline | None:
    """The pair at the chosen common setting, LeViT token or conv layout whichever is faster."""
    ok = [s for s in machine.ok() if s.entry.device == device]
    levits = {levit, levit + "_conv"}

    def slots(models: set[str]) -> set[tuple]:
        return {(setting_key(s.entry), variant(s.entry)) for s in ok if s.entry.model in models}

    common = slots(levits) & slots({effnet})
    setting = choose_setting({st: 2 for st, _ in common}, device)
    if setting is None:
        return None
    variants = {v for st, v in common if st == setting}
    shared = [s for s in ok if variant(s.entry) in variants]
    a, b = _best_at(shared, levits, setting), _best_at(shared, {effnet}, setting)
    c = compare_samples(per_image_seconds(b.entry), per_image_seconds(a.entry))
    pa, pb = zoo.model_spec(levit).published, zoo.model_spec(effnet).published
    paper_a, hardware = paper_throughput(pa, device, machine.system.get("arch"))
    paper_b, _ = paper_throughput(pb, device, machine.system.get("arch"))
    if device == "cuda":
        hardware = "V100, AMP fp16, each at its largest batch"
    paper_ratio = paper_a / paper_b if paper_a and paper_b else None
    return Headline(machine.title, device, setting, a, b, c.speed_ratio, tuple(c.ratio_ci95), paper_ratio, hardware)


def headlines(machines: Sequence[Machine]) -> list[Headline]:
    """Every headline pair measured at a common setting, per machine and device."""
    out = []
    for m in machines:
        for device in m.devices():
            for levit, effnet in HEADLINE_PAIRS:
                h = headline_for(m, device, levit, effnet)
                if h is not None:
                    out.append(h)
    return out


def headline_section(machines: Sequence[Machine]) -> str:
    found = headlines(machines)
    lines = ["## The paper's headline, measured", "",
             "LeViT's speed-up over EfficientNet at matched accuracy (LeViT-128S vs B0, LeViT-192 vs B2 near 80%, "
             "LeViT-256 vs B3 near 81.6%). Both models at the same device, precision, threads and batch size; the "
             "paper's CPU protocol (fp32, 1 thread, batch 16) when measured, else the common setting with the "
             "largest batch. Each model on its fastest backend among those measured for both (same runtime options); "
             "LeViT's token and conv layouts count as one model (the faster is used and named).", ""]
    if not found:
        pairs = ", ".join(f"{a} + {b}" for a, b in HEADLINE_PAIRS)
        return "\n".join(lines + [f"Not measured: no pair ({pairs}) was measured at a common setting.", ""])
    rows = []
    for h in found:
        a, b = h.levit.entry, h.efficientnet.entry
        rows.append([f"{base_model(a.model)} vs {b.model}", h.machine, setting_words(h.setting, h.device),
                     f"{a.model} ({variant(a)}): {fmt_ips(a.images_per_second)}",
                     f"{b.model} ({variant(b)}): {fmt_ips(b.images_per_second)}",
                     f"{h.ratio:.2f}× [{h.ratio_ci95[0]:.2f}, {h.ratio_ci95[1]:.2f}]",
                     f"{h.paper_ratio:.2f}× ({h.paper_hardware})" if h.paper_ratio else "—"])
    table = md_table(["pair", "machine", "setting", "LeViT img/s", "EfficientNet img/s",
                      "measured speed-up [95% CI]", "paper's speed-up"], rows, "lllrrrr")
    sources = sources_text(s for h in found for s in (h.levit, h.efficientnet))
    lines += [table, "", "95% CI: bootstrap of the ratio of median speeds. " + sources, ""]
    done = {(base_model(h.levit.entry.model), h.efficientnet.entry.model) for h in found}
    missing = [f"{a} vs {b}" for a, b in HEADLINE_PAIRS if (a, b) not in done]
    if missing:
        lines += [f"Not measured at a common setting: {', '.join(missing)}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the speed-accuracy plot


@dataclass
class Point:
    model: str  # as measured (may be a _conv layout)
    family: str
    top1: float
    images_per_second: float
    source: Sourced


@dataclass
class Panel:
    title: str
    points: list[Point]
    setting: str
    left_out: list[str] = field(default_factory=list)  # models measured on this device, not at this setting


def panel_for(machine: Machine, device: str) -> Panel | None:
    """One setting and one backend variant (the form of the paper's figure: one runtime), token/conv
    merged, for the models with a published top-1."""
    ok = [s for s in machine.ok() if s.entry.device == device and _published_top1(s.entry.model) is not None]
    coverage: dict[tuple, set] = {}
    for s in ok:
        coverage.setdefault(setting_key(s.entry), set()).add(base_model(s.entry.model))
    setting = choose_setting({k: len(v) for k, v in coverage.items()}, device)
    if setting is None:
        return None
    at = [s for s in ok if setting_key(s.entry) == setting]
    chosen = choose_variant(at)
    points = []
    for model in sorted({base_model(s.entry.model) for s in at if variant(s.entry) == chosen}):
        best = best_entry(s for s in at if base_model(s.entry.model) == model and variant(s.entry) == chosen)
        points.append(Point(best.entry.model, family_of(model), _published_top1(model), best.entry.images_per_second,
                            best))
    shown = {base_model(p.model) for p in points}
    left_out = sorted({base_model(s.entry.model) for s in ok} - shown)
    return Panel(f"{device} · {machine.title}", points, f"{setting_words(setting, device)}, {chosen}", left_out)


def choose_variant(entries: Sequence[Sourced]) -> str:
    """The backend variant that covers most models; ties go to plain ``torch``, then by name."""
    models: dict[str, set] = {}
    for s in entries:
        models.setdefault(variant(s.entry), set()).add(base_model(s.entry.model))
    return min(models, key=lambda v: (-len(models[v]), v != BASELINE_BACKEND, v))


def _published_top1(model: str) -> float | None:
    spec = spec_of(model)
    return spec.published.top1 if spec and spec.published else None


def speed_accuracy_panels(machines: Sequence[Machine]) -> list[Panel]:
    return [p for m in machines for d in m.devices() if (p := panel_for(m, d)) is not None]


def _label_below(point, points) -> bool:
    """Whether a point's label goes below it: a faster point sits close by (labels would overlap)."""
    return any(q is not point and abs(q.top1 - point.top1) < 1.5
               and 0 <= math.log10(q.images_per_second / point.images_per_second) < 0.1 for q in points)


def plot_png(panels: Sequence[Panel]) -> bytes:
    """The paper's Figure 1 form: images/s (log) against top-1, one series per family, one panel
    per machine and device.  Agg canvas, no display, no global pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * len(panels), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for family in dict.fromkeys(p.family for p in panel.points):
            pts = sorted((p for p in panel.points if p.family == family), key=lambda p: p.top1)
            color, marker = FAMILY_STYLE.get(family, ("black", "."))
            ax.plot([p.top1 for p in pts], [p.images_per_second for p in pts], marker=marker, color=color,
                    label=FAMILY_LABELS.get(family, family))
            for p in pts:
                crowded = _label_below(p, panel.points)
                ax.annotate(p.model, (p.top1, p.images_per_second), fontsize=7,
                            xytext=(3, -10) if crowded else (3, 3), textcoords="offset points")
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.margins(x=0.12, y=0.15)
        ax.set_xlabel("ImageNet top-1 (published), %")
        ax.set_ylabel("images/s (measured)")
        ax.set_title(f"{panel.title}\n{panel.setting}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _plain(v: float) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:.2g}"


def _plain_log_ticks(ax) -> None:
    """Log axis with plain numbers (300, 10,000) rather than 3×10²; over more than a decade only
    the 2s and 5s of the minor ticks are labelled."""
    from matplotlib.ticker import FuncFormatter

    lo, hi = ax.get_ylim()
    wide = hi / max(lo, 1e-12) >= 10

    def minor(v: float, _pos) -> str:
        mantissa = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0
        return _plain(v) if not wide or any(abs(mantissa - m) < 1e-6 for m in (2, 5)) else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _plain(v)))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def plot_section(panels: Sequence[Panel], plot_name: str | None) -> str:
    lines = ["## Speed and accuracy", ""]
    if not panels or plot_name is None:
        return "\n".join(lines + ["No plot: no successful entry of a model with a published top-1.", ""])
    lines += [f"![images/s against published top-1]({plot_name})", "",
              "Images/s (log axis) measured here against the published top-1, as in the paper's Figure 1. "
              "Per panel one setting and one backend (the one that covers most models), token/conv layouts "
              "merged:", ""]
    lines += [f"- {p.title}: {p.setting}" + (f" (not measured there, so not shown: {', '.join(p.left_out)})"
                                              if p.left_out else "") for p in panels]
    lines += ["", sources_text(pt.source for p in panels for pt in p.points), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the whole report


@dataclass
class Report:
    markdown: str
    plot_png: bytes | None
    plot_name: str | None


def relative_to(records: Sequence[RunRecord], folder: str | os.PathLike) -> list[RunRecord]:
    """Copies whose ``source`` is relative to ``folder`` (the report's) when the file lies inside it,
    as a reader of the report sees it; other paths stay as given."""
    out = []
    for r in records:
        src = r.source
        if src and Path(src).resolve().is_relative_to(Path(folder).resolve()):
            src = os.path.relpath(Path(src).resolve(), Path(folder).resolve())
        out.append(replace(r, source=src))
    return out


def build_report(records: Sequence[RunRecord], plot_name: str | None = "speed-accuracy.png",
                 command: str | None = None, analysis: str | None = None) -> Report:
    """The Markdown text and the plot's PNG bytes (nothing written); ``plot_name`` is the link target.

    ``analysis``: Markdown written by a person about these results, placed after the headline
    (kept in its own file so that regenerating the report keeps it)."""
    machines = group_by_machine(records)
    panels = speed_accuracy_panels(machines)
    png = plot_png(panels) if panels and plot_name else None
    files = ", ".join(f"`{r.source or '(unsaved results)'}`" for r in records)
    head = ["# levit-bench report", "",
            f"From {len(records)} results file{'s' if len(records) != 1 else ''} ({files}), "
            f"{len(machines)} machine{'s' if len(machines) != 1 else ''}."]
    if command:
        head.append(f"Regenerate this report: `{command}`.")
    parts = ["\n".join(head) + "\n", headline_section(machines)]
    if analysis:
        parts.append(analysis.strip() + "\n")
    parts.append(plot_section(panels, plot_name if png else None))
    parts += [machine_section(m) for m in machines]
    return Report("\n".join(parts).rstrip() + "\n", png, plot_name if png else None)


def report_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """The report file (a folder gets REPORT.md) and the plot next to it."""
    p = Path(out)
    if p.suffix.lower() != ".md":
        p = p / "REPORT.md"
    return p, p.with_name(f"{p.stem}-speed-accuracy.png")


def write_report(paths: Iterable[str | os.PathLike], out: str | os.PathLike = "results/REPORT.md",
                 command: str | None = None, analysis: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """Load results files, build the report and write it (and its plot) atomically."""
    records = load_results(paths)
    report_path, plot_path = report_paths(out)
    text = None
    if analysis is not None:
        try:
            text = Path(analysis).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the analysis file {analysis}: {exc}") from None
    report = build_report(relative_to(records, report_path.parent), plot_path.name, command, text)
    try:
        if report.plot_png is not None:
            atomic_write_bytes(plot_path, report.plot_png)
        atomic_write_text(report_path, report.markdown)
    except OSError as exc:
        raise UserError(f"cannot write the report to {report_path}: {exc.strerror or exc}") from None
    return report_path, (plot_path if report.plot_png is not None else None)


def report_parser():
    from .cli import Parser

    p = Parser(prog="levit-bench report",
               description="A Markdown report (tables, paper figures, speed-accuracy plot) from results files; "
               "files from several machines merge into one report.")
    p.add_argument("results", nargs="+", help="results files (JSON) or folders of them")
    p.add_argument("-o", "--output", default="results/REPORT.md",
                   help="report file (.md) or folder; the plot is written next to it (default results/REPORT.md)")
    p.add_argument("--analysis", default=None,
                   help="a Markdown file of written analysis to include after the headline")
    return p


def cmd_report(argv: Sequence[str]) -> int:
    """``levit-bench report RESULTS... [-o REPORT.md]``."""
    args = report_parser().parse_args(argv)
    command = "levit-bench report " + shlex.join(list(argv))
    report_path, plot_path = write_report(args.results, args.output, command, args.analysis)
    from . import render

    con = render.console()
    con.print(f"report: {report_path}")
    if plot_path is not None:
        con.print(f"plot: {plot_path}")
    return 0
