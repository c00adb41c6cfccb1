"""The paper's headline, measured: LeViT's speed-up over EfficientNet at matched accuracy."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import paper, zoo
from ..present import fmt_ips, md_table
from ..present import speed_ratio
from ..spec import Conditions
from .choice import best_entry, choose_setting, setting_words
from .merge import Machine, Sourced, base_model, sources_text


@dataclass
class Headline:
    """LeViT's measured speed-up over EfficientNet at one setting, next to the paper's."""

    machine: str
    device: str
    setting: Conditions
    levit: Sourced
    efficientnet: Sourced
    ratio: float  # LeViT images/s over EfficientNet images/s (ratio of medians)
    ratio_ci95: tuple[float, float]
    paper_ratio: float | None
    paper_hardware: str
    paired: bool = False  # computed round by round (both in one run's timed group)


def _best_at(entries: Iterable[Sourced], models: set[str], setting: Conditions) -> Sourced | None:
    return best_entry(s for s in entries if s.entry.model in models and s.entry.conditions == setting)


def headline_for(machine: Machine, device: str, levit: str, effnet: str) -> Headline | None:
    """The pair at the chosen common setting, LeViT token or conv layout whichever is faster."""
    ok = [s for s in machine.ok() if s.entry.device == device]
    levits = {levit, levit + "_conv"}

    def slots(models: set[str]) -> set[tuple[Conditions, str]]:
        return {(s.entry.conditions, s.entry.variant) for s in ok if s.entry.model in models}

    common = slots(levits) & slots({effnet})
    setting = choose_setting({st: 2 for st, _ in common})
    if setting is None:
        return None
    variants = {v for st, v in common if st == setting}
    shared = [s for s in ok if s.entry.variant in variants]
    a, b = _best_at(shared, levits, setting), _best_at(shared, {effnet}, setting)
    c = speed_ratio(a.entry, b.entry, same_run=a.record is b.record)
    pa, pb = zoo.model_spec(levit).published, zoo.model_spec(effnet).published
    paper_a, hardware = paper.paper_throughput(pa, device, machine.system.get("arch"))
    paper_b, _ = paper.paper_throughput(pb, device, machine.system.get("arch"))
    if device == "cuda":
        hardware = f"{paper.GPU_PROTOCOL.hardware}, each at its largest batch"
    paper_ratio = paper_a / paper_b if paper_a and paper_b else None
    return Headline(machine.title, device, setting, a, b, c.value, c.ci95, paper_ratio, hardware, c.paired)


def headlines(machines: Sequence[Machine]) -> list[Headline]:
    """Every headline pair measured at a common setting, per machine and device."""
    out = []
    for m in machines:
        if m.emulated:
            continue
        for device in m.devices():
            for levit, effnet in paper.HEADLINE_PAIRS:
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
        pairs = ", ".join(f"{a} + {b}" for a, b in paper.HEADLINE_PAIRS)
        return "\n".join(lines + [f"Not measured: no pair ({pairs}) was measured at a common setting.", ""])
    rows = []
    for h in found:
        a, b = h.levit.entry, h.efficientnet.entry
        rows.append([f"{base_model(a.model)} vs {b.model}", h.machine, setting_words(h.setting),
                     f"{a.model} ({a.variant}): {fmt_ips(a.timing.images_per_second)}",
                     f"{b.model} ({b.variant}): {fmt_ips(b.timing.images_per_second)}",
                     f"{h.ratio:.2f}× [{h.ratio_ci95[0]:.2f}, {h.ratio_ci95[1]:.2f}]",
                     f"{h.paper_ratio:.2f}× ({h.paper_hardware})" if h.paper_ratio else "—"])
    table = md_table(["pair", "machine", "setting", "LeViT img/s", "EfficientNet img/s",
                      "measured speed-up [95% CI]", "paper's speed-up"], rows, "lllrrrr")
    sources = sources_text(s for h in found for s in (h.levit, h.efficientnet))
    lines += [table, "", "95% CI: when both were timed in one run, from the per-round ratios (Student t over "
              "rounds: the machine's drift cancels); otherwise the ratio of medians, its interval spanned by each "
              "side's order-statistic interval of its round medians (the interval `compare` uses). " + sources, ""]
    done = {(base_model(h.levit.entry.model), h.efficientnet.entry.model) for h in found}
    missing = [f"{a} vs {b}" for a, b in paper.HEADLINE_PAIRS if (a, b) not in done]
    if missing:
        lines += [f"Not measured at a common setting: {', '.join(missing)}.", ""]
    return "\n".join(lines)
