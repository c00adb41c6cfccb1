"""The per-machine part of a report: system facts, files, one table per device setting, the
paper's figures beside ours, and what was not measured."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import paper
from ..present import (NOISE_MARK, Baselines, fmt_efficiency, fmt_intervals, fmt_ips, fmt_ratio, md_table, most_efficient,
                       spread_pct)
from ..results import Entry
from ..spec import BASELINE_BACKEND, Status, threads_text
from ..zoo import Published
from .choice import best_entry, is_paper_setting
from .merge import Machine, Sourced, command_of, sources_text, spec_of


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
        count = f"{len(r.results)}" + (f" (+ {len(r.accuracy)} accuracy records)" if r.accuracy else "") \
            + (f" (+ {len(r.profiles)} profiles)" if r.profiles else "")
        rows.append((f"`{r.source or '(unsaved results)'}`", r.created, count, status, f"`{command_of(r)}`"))
    return md_table(["results file", "started", "entries", "status", "command"], rows)


def setting_groups(entries: Iterable[Sourced]) -> dict[tuple[str, str, int], list[Sourced]]:
    """Entries by (device, precision, threads): one table each, batch sizes as columns."""
    groups: dict[tuple[str, str, int], list[Sourced]] = {}
    for s in entries:
        groups.setdefault((s.entry.device, s.entry.precision, s.entry.threads), []).append(s)
    return dict(sorted(groups.items(), key=lambda kv: kv[0]))


def cell(e: Entry | None, baselines: Baselines) -> str:
    """images/s ± IQR %, the noise mark, and the speed-up over torch (not on the baseline itself);
    then the adjusted speed and the two labelled intervals (entries that have them)."""
    if e is None:
        return ""
    if not e.ok:
        return str(e.status)
    text = f"{fmt_ips(e.timing.images_per_second)} ±{spread_pct(e):.0f}%" + (f" {NOISE_MARK}" if e.timing.noisy else "")
    up = baselines.speedup(e)
    if up is not None and baselines.baseline(e) is not e:
        text += f" ({fmt_ratio(up)})"
    extra = fmt_intervals(e)
    return text + (f"<br>{extra}" if extra else "")


def device_table(entries: Sequence[Sourced]) -> str:
    """Models as rows, backend (with options) × batch size as columns: images/s ± IQR, speed-up over torch."""
    models = list(dict.fromkeys(s.entry.model for s in entries))
    variants = list(dict.fromkeys(s.entry.variant for s in entries))
    batches = sorted({s.entry.batch_size for s in entries})
    cells = {(s.entry.model, s.entry.variant, s.entry.batch_size): s.entry for s in entries}
    columns = [(v, n) for v in variants for n in batches if any(k[1:] == (v, n) for k in cells)]
    header = ["model"] + [f"{v} · batch {n}" for v, n in columns] + ["GMAC/s (% of peak)"]
    run = {id(s.entry): id(s.record) for s in entries}
    baselines = Baselines((s.entry for s in entries), run_of=lambda e: run[id(e)])
    rows = [[m] + [cell(cells.get((m, v, n)), baselines) for v, n in columns] + [_efficiency_cell(m, entries)]
            for m in models]
    return md_table(header, rows, "l" + "r" * (len(columns) + 1))


def _efficiency_cell(model: str, entries: Sequence[Sourced]) -> str:
    """The model's most efficient entry in the table: GMAC/s, share of the measured peak, where."""
    best = most_efficient(s.entry for s in entries if s.entry.model == model)
    return f"{fmt_efficiency(best)} {best.variant}, b{best.batch_size}" if best else "—"


def device_section(group: tuple[str, str, int], entries: Sequence[Sourced]) -> str:
    device, precision, threads = group
    lines = [f"### {device} · {precision} · {threads_text(threads)}", "",
             device_table(entries), "",
             f"images/s: median ± IQR as % of the median; {NOISE_MARK} noisy (IQR above 10%); (n×): speed-up over "
             f"`{BASELINE_BACKEND}` at the same batch size; [options]: runtime options other than the defaults. "
             "GMAC/s: multiply-accumulates per second reached (counted MACs per image × images/s), and in brackets "
             "the share of this machine's dense-GEMM peak at the same precision and threads "
             "(`levit-bench sysinfo --peak`), for the model's most efficient entry of the table.", "",
             sources_text(entries), ""]
    return "\n".join(lines)


def at_paper_setting(entries: Iterable[Sourced], device: str) -> Sourced | None:
    """Our fastest entry at the paper's protocol: CPU fp32, 1 thread, batch 16; GPU fp16 at the
    largest batch measured (the paper's "largest batch that fits")."""
    ok = [s for s in entries if s.entry.ok]
    if device == "cuda":
        ok = [s for s in ok if s.entry.precision == paper.GPU_PROTOCOL.precision]
        largest = max((s.entry.batch_size for s in ok), default=None)
        return best_entry(s for s in ok if s.entry.batch_size == largest)
    return best_entry(s for s in ok if is_paper_setting(s.entry.conditions))


def _top1(pub: Published) -> str:
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
            published, hardware = paper.paper_throughput(pub, device, arch)
            mine = [s for s in on_device if s.entry.model == model]
            best, same = best_entry(mine), at_paper_setting(mine, device)
            e = best.entry if best else None
            rows.append([
                model, device, _top1(pub), f"{pub.params / 1e6:.1f}M" if pub.params else "—",
                f"{pub.flops_m:g}M" if pub.flops_m else "—", _counted(mine), fmt_ips(published), hardware,
                f"{fmt_ips(same.entry.timing.images_per_second)} ({same.entry.variant}, batch {same.entry.batch_size})"
                if same else "—", fmt_efficiency(same.entry) if same else "—",
                fmt_ips(e.timing.images_per_second) if e else "not measured",
                e.variant if e else "—",
                f"{e.precision}, batch {e.batch_size}, {threads_text(e.threads)}" if e else "—",
            ])
    return rows


def _counted(entries: Sequence[Sourced]) -> str:
    macs = next((s.entry.explain.macs for s in entries if s.entry.explain and s.entry.explain.macs), None)
    return f"{macs / 1e6:,.0f}M" if macs else "—"


def paper_section(machine: Machine) -> str:
    rows = paper_rows(machine)
    if not rows:
        return ""
    table = md_table(["model", "device", "top-1 (published)", "params", "FLOPs", "MACs (counted)", "paper img/s",
                      "paper hardware", "ours at the paper's setting", "GMAC/s (% of peak) there", "our best img/s",
                      "backend", "our setting"], rows, "llrrrrrlrrrll")
    return "\n".join([
        "### Paper figures and ours", "", table, "",
        "\\* top-1 from the model's own paper, not verified against the LeViT paper's table. "
        "Ours at the paper's setting: on CPU fp32, 1 thread, batch 16; on GPU fp16 at the largest batch measured; "
        "fastest backend there. Our best: the fastest successful entry on this machine over every backend and setting. "
        "FLOPs: multiply-adds as published; MACs (counted): counted by `torch.utils.flop_counter` on the model as "
        "timed (BN folded, at its input size).", "",
    ])


def problems_section(machine: Machine) -> str:
    """Failed and skipped entries with their reasons, and entries replaced by a later file."""
    lines = []
    bad = [s for s in machine.entries if s.entry.status is not Status.OK]
    if bad:
        lines += ["### Not measured", ""]
        lines += [f"- **{s.entry.status}**: {s.entry.label()}: {s.entry.reason or '(no reason given)'} "
                  f"(`{s.file}`)" for s in bad]
        lines.append("")
    if machine.superseded:
        lines += ["### Measured more than once", ""]
        lines += [f"- {old.entry.label()} ({old.entry.status}) in `{old.file}`: not shown; "
                  f"using `{kept.file}` ({kept.entry.status})" for old, kept in machine.superseded]
        lines.append("")
    return "\n".join(lines)


EMULATED_WORDS = "parity checked on {arch} (emulated)"


def emulated_section(machine: Machine) -> str:
    """A machine that ran under user-mode emulation: what was checked, and the paper's figures for
    that architecture beside it; its timings are not speed and are not shown."""
    arch = machine.system.get("arch") or "?"
    checked = EMULATED_WORDS.format(arch=arch)
    rows = []
    for s in machine.entries:
        e, par = s.entry, s.entry.export.parity or {}
        spec = spec_of(e.model)
        published, hardware = paper.paper_throughput(spec.published, e.device, arch) if spec and spec.published \
            else (None, "—")
        status = checked if e.status is Status.OK else f"{e.status}: {e.reason}"
        rows.append([e.model, e.variant, status, f"{par.get('max_rel_diff', float('nan')):.2g}" if par else "—",
                     f"{par.get('cosine', float('nan')):.9f}" if par else "—", fmt_ips(published), hardware])
    table = md_table(["model", "backend", f"ours ({arch})", "max rel diff", "cosine", "paper img/s",
                      "paper hardware"], rows, "lllrrrl")
    return "\n".join([
        f"### {arch}: correctness under emulation ({machine.system.get('emulated')})", "",
        f"These files were measured under user-mode emulation of {arch}: parity against eager fp32 was checked "
        "there, but the timings are those of an emulator (hundreds of times slower than the hardware) and are "
        "not shown as speed. The check is rerun by `benchmarks/arm/run_emulated.sh` (docs/perf/ has its log).", "",
        table, "", sources_text(machine.entries), ""])


def machine_section(machine: Machine) -> str:
    parts = [f"## Machine {machine.title}", "", system_table(machine), "", files_table(machine), ""]
    if machine.emulated:
        return "\n".join(parts + [emulated_section(machine), problems_section(machine)])
    groups = setting_groups(machine.entries)
    if not groups:
        parts += ["No entries in these files.", ""]
    parts += [device_section(setting, entries) for setting, entries in groups.items()]
    parts += [paper_section(machine), problems_section(machine)]
    return "\n".join(p for p in parts if p is not None)
