"""The INT8 section: what post-training int8 quantization buys per model and runtime, beside fp32.

Three tables per machine: int8 over fp32 for every int8 entry (its fp32 twin: same model, runtime
and options, device, threads and batch), LeViT over EfficientNet at int8 beside the same ratio at
fp32 (the paper's headline pairs), and, where accuracy records were given, the top-1 change.  Every
ratio goes through ``present.speed_ratio`` (round by round when both entries were timed together).
An int8 entry that failed (quantization, parity) is listed with its reason; it has no speed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import paper
from ..present import fmt_ips, md_table
from ..present import speed_ratio
from ..results import Entry
from ..spec import Status, variant
from ..stats import Ratio
from .merge import Machine, Sourced, sources_text

#: (model, backend, precision) -> top-1 (%), from accuracy records of trained weights on real images
Top1 = Mapping[tuple[str, str, str], float]


@dataclass
class Int8Row:
    """An int8 entry with its fp32 twin (None: not measured) and int8's speed over fp32."""

    int8: Sourced
    fp32: Sourced | None
    ratio: Ratio | None


def fp32_key(e: Entry) -> tuple:
    """What an int8 entry and its fp32 twin share: model, runtime with options (as at fp32: the
    calibration folder only labels int8), device, threads, batch size."""
    return e.model, variant(e.backend, "fp32", e.runtime_options), e.device, e.threads, e.batch_size


def int8_rows(machine: Machine) -> list[Int8Row]:
    """Every int8 entry of ``machine`` (failed ones too) with its fp32 twin when there is one: the
    twin timed in the same run first (a ratio paired by round), even where a later file measured
    the same fp32 entry again and replaced it in the machine's tables."""
    twins = {fp32_key(s.entry): s for s in machine.ok() if s.entry.precision == "fp32"}
    same_run = {(id(s.record), fp32_key(s.entry)): s
                for s in [*machine.entries, *(old for old, _new in machine.superseded)]
                if s.entry.ok and s.entry.precision == "fp32"}
    rows = []
    for s in machine.entries:
        if s.entry.precision != "int8" or s.entry.status is Status.SKIPPED:
            continue
        twin = same_run.get((id(s.record), fp32_key(s.entry))) or twins.get(fp32_key(s.entry))
        ratio = speed_ratio(s.entry, twin.entry, same_run=s.record is twin.record) if twin and s.entry.ok else None
        rows.append(Int8Row(s, twin, ratio))
    return sorted(rows, key=lambda r: (r.int8.entry.model, r.int8.entry.backend, r.int8.entry.batch_size))


def fmt_ci(r: Ratio | None) -> str:
    if r is None:
        return "—"
    return f"{r.value:.2f}× [{r.ci95[0]:.2f}, {r.ci95[1]:.2f}]" + (" (paired)" if r.paired else "")


def note_of(e: Entry, prefix: str) -> str:
    """The text of ``e``'s first note starting with ``prefix`` (without it), or a dash."""
    return next((n[len(prefix):] for n in e.notes if n.startswith(prefix)), "—")


def _parity(e: Entry) -> str:
    p = e.export.parity or {}
    if "cosine" not in p:
        return "—"
    return f"cos {p['cosine']:.4f}, top-1 {p['top1_agreement']:.2f}"


def speedup_table(rows: Sequence[Int8Row]) -> str:
    out = []
    for r in rows:
        e = r.int8.entry
        speed = fmt_ips(e.timing.images_per_second) if e.ok else f"{e.status}: {e.reason}"
        out.append([e.model, e.variant, f"{e.device}, {e.threads} thr, batch {e.batch_size}",
                    fmt_ips(r.fp32.entry.timing.images_per_second) if r.fp32 else "not measured", speed, fmt_ci(r.ratio),
                    _parity(e), note_of(e, "calibration: ")])
    return md_table(["model", "runtime", "setting", "fp32 img/s", "int8 img/s", "int8 / fp32 [95% CI]",
                     "parity vs eager fp32", "calibration"], out, "lllrrrll")


def pair_table(machine: Machine, rows: Sequence[Int8Row]) -> tuple[str, list[Sourced]]:
    """LeViT over EfficientNet at int8 beside fp32, per headline pair, runtime and setting."""
    int8 = {(r.int8.entry.model,) + fp32_key(r.int8.entry)[1:]: r for r in rows if r.int8.entry.ok}
    out, used = [], []
    for levit, effnet in paper.HEADLINE_PAIRS:
        for key, a in sorted(int8.items(), key=lambda kv: kv[0]):
            if key[0] != levit or (effnet,) + key[1:] not in int8:
                continue
            b = int8[(effnet,) + key[1:]]
            at_int8 = speed_ratio(a.int8.entry, b.int8.entry, same_run=a.int8.record is b.int8.record)
            at_fp32 = None
            if a.fp32 and b.fp32:
                at_fp32 = speed_ratio(a.fp32.entry, b.fp32.entry, same_run=a.fp32.record is b.fp32.record)
                used += [a.fp32, b.fp32]
            used += [a.int8, b.int8]
            _model, runtime, device, threads, batch = key
            out.append([f"{levit} vs {effnet}", runtime, f"{device}, {threads} thr, batch {batch}",
                        fmt_ci(at_fp32), fmt_ci(at_int8)])
    if not out:
        return "", used
    return md_table(["pair", "runtime", "setting", "LeViT / EfficientNet at fp32", "at int8"], out, "lllrr"), used


def accuracy_table(rows: Sequence[Int8Row], top1: Top1) -> str:
    out = []
    for r in rows:
        e = r.int8.entry
        a, b = top1.get((e.model, e.backend, "fp32")), top1.get((e.model, e.backend, "int8"))
        if a is None or b is None:
            continue
        out.append([e.model, e.backend, f"{a:.2f}", f"{b:.2f}", f"{b - a:+.2f}"])
    out = [list(t) for t in dict.fromkeys(tuple(x) for x in out)]  # one row per model and runtime
    if not out:
        return ""
    return md_table(["model", "runtime", "top-1 fp32 (%)", "top-1 int8 (%)", "change (points)"], out, "llrrr")


def int8_section(machines: Sequence[Machine], top1: Top1 | None = None) -> str:
    """The INT8 section's Markdown; empty when no machine has an int8 entry.  ``top1``: accuracy of
    trained weights on real images per (model, backend, precision), where measured."""
    parts, sources = [], []
    for m in machines:
        if m.emulated:
            continue
        rows = int8_rows(m)
        if not rows:
            continue
        parts += [f"### {m.title}", "", "int8 over fp32, each at its own model, runtime and setting:", "",
                  speedup_table(rows), ""]
        table, used = pair_table(m, rows)
        if table:
            parts += ["LeViT's speed-up over EfficientNet (the paper's headline pairs) at int8, beside fp32:", "",
                      table, ""]
        accuracy = accuracy_table(rows, top1 or {})
        if accuracy:
            parts += ["Top-1 accuracy with trained weights on real images, fp32 and int8:", "", accuracy, ""]
        else:
            parts += ["Accuracy change: not measured (no accuracy records of trained weights on real images for "
                      "these exports).", ""]
        sources += [r.int8 for r in rows] + [r.fp32 for r in rows if r.fp32] + used
    if not parts:
        return ""
    head = ["## INT8", "",
            "Post-training static quantization of the same fused fp32 export: ONNX Runtime's QDQ "
            "(`onnxruntime.quantization`, int8 weights per channel) and OpenVINO's via nncf; the settings and the "
            "calibration data are in each entry's notes. An int8 export is timed only when its logits agree with "
            "the eager fp32 model's on the parity batch within the int8 tolerances (a check that nothing broke, "
            "not an accuracy figure); one that cannot be quantized or fails that check is listed with the reason. "
            "Calibrated on synthetic inputs, the accuracy is unknown. The 95% CI of a ratio is paired by round when "
            "both entries were timed in one run, else spanned by each side's order-statistic interval of its "
            "round medians.", ""]
    return "\n".join(head + parts + [sources_text(sources), ""])
