"""Energy counters the machine exposes: RAPL on CPUs (``/sys/class/powercap``), NVML on NVIDIA GPUs.

A run reads the counter just before and just after each timed block, outside the timed calls, so an
entry's joules are those spent while its own calls ran.  Both counters are cumulative hardware
counters, not estimates: where neither is there (a VM hides RAPL, the file is root-only, no
``pynvml``, a GPU without the energy counter) the entry records *why*, never a guessed figure.

What they cover differs and is recorded beside the figure: RAPL's package domains count the whole
CPU package (other processes and idle cores included; DRAM is a separate domain, not counted), NVML
the whole board of one GPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

#: where the kernel exposes powercap zones; overridable (tests, containers that mount it elsewhere)
POWERCAP_ENV = "LEVIT_BENCH_POWERCAP"
POWERCAP_ROOT = "/sys/class/powercap"


class EnergyCounter(Protocol):
    source: str  # which counter, e.g. "RAPL package-0" or "NVML GPU 0"
    scope: str  # what it counts

    def read_j(self) -> float:
        """Joules since the counter was opened (monotonic; wrap-arounds handled)."""


@dataclass
class _RaplDomain:
    path: Path  # .../energy_uj
    range_uj: int  # the counter wraps at this value
    last_uj: int


@dataclass
class RaplCounter:
    """The package domains of every CPU socket, summed."""

    domains: list[_RaplDomain]
    source: str
    scope: str = "whole CPU package(s), every process and idle core included; DRAM not included"
    total_uj: int = field(default=0, init=False)

    def read_j(self) -> float:
        for d in self.domains:
            now = int(d.path.read_text())
            self.total_uj += (now - d.last_uj) % d.range_uj  # one wrap between reads at most
            d.last_uj = now
        return self.total_uj / 1e6


def _rapl(root: Path) -> RaplCounter | str:
    if not root.is_dir():
        return f"no RAPL counters: {root} does not exist (a VM or a kernel without powercap)"
    domains, names = [], []
    for zone in sorted(root.iterdir()):
        # top-level zones only ("intel-rapl:0"; "intel-rapl:0:1" are its sub-domains, counted in it)
        if zone.name.count(":") != 1 or not (zone / "energy_uj").exists():
            continue
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            continue
        if not name.startswith("package"):
            continue
        try:
            now = int((zone / "energy_uj").read_text())
            span = int((zone / "max_energy_range_uj").read_text())
        except PermissionError:
            return (f"RAPL counters are readable by root only here ({zone / 'energy_uj'}); "
                    "run as root or make energy_uj readable to record energy")
        except (OSError, ValueError) as exc:
            return f"cannot read {zone / 'energy_uj'}: {exc}"
        domains.append(_RaplDomain(zone / "energy_uj", max(span, 1), now))
        names.append(name)
    if not domains:
        return f"no RAPL package domain under {root}"
    return RaplCounter(domains, "RAPL " + "+".join(names))


@dataclass
class NvmlCounter:
    """NVML's total-energy counter of one GPU (millijoules since the driver loaded)."""

    nvml: Any
    handle: Any
    source: str
    scope: str = "whole GPU board"
    first_mj: int = 0

    def read_j(self) -> float:
        return (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.first_mj) / 1e3


def _nvml() -> NvmlCounter | str:
    try:
        import pynvml
    except ImportError:
        return "no NVML: pynvml is not installed (pip install nvidia-ml-py)"
    import torch

    try:
        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        uuid = str(getattr(props, "uuid", "") or "")
        if uuid:  # the CUDA ordinal is not NVML's index under CUDA_VISIBLE_DEVICES; the UUID is the same
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        first = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as exc:  # noqa: BLE001 - NVMLError_NotSupported, no driver, ...: say why
        return f"NVML has no energy counter for this GPU: {exc or type(exc).__name__}"
    return NvmlCounter(pynvml, handle, f"NVML {props.name}", first_mj=first)


def open_counter(device: str) -> EnergyCounter | str:
    """The energy counter for ``device`` ("cpu" or "cuda"), or the one-line reason there is none."""
    if device == "cuda":
        return _nvml()
    return _rapl(Path(os.environ.get(POWERCAP_ENV) or POWERCAP_ROOT))


def energy_record(joules: list[float], seconds: float, images: int, counter: EnergyCounter | str) -> dict[str, Any]:
    """What an entry stores: joules per image and mean watts over its timed blocks, and the source
    and scope of the counter; or ``{"unavailable": reason}``."""
    if isinstance(counter, str):
        return {"unavailable": counter}
    if not joules or images <= 0 or seconds <= 0:
        return {"unavailable": "no timed block was metered"}
    total = float(sum(joules))
    if total <= 0:
        return {"unavailable": f"{counter.source} did not advance during the timed calls (counter too coarse)"}
    return {"joules_per_image": total / images, "watts": total / seconds, "joules": total, "seconds": seconds,
            "source": counter.source, "scope": counter.scope}
