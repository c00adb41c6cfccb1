"""The LeViT paper's measurement protocol, its headline comparisons and the hardware it used.

Per-model published figures live with each model in ``zoo.py``; what the paper *did* (which
threads, batch and precision, on which machines, comparing which pairs) lives here, once.
"""
from __future__ import annotations

from dataclasses import dataclass

from .sysinfo import is_arm
from .zoo import Published


@dataclass(frozen=True)
class Protocol:
    """How the paper measured on one kind of device."""

    precision: str
    batch_size: int
    threads: int | None  # None: all (GPU)
    half_mode: str = "cast"
    hardware: str = ""
    shrink_on_oom: bool = False  # "the largest batch that fits"


CPU_PROTOCOL = Protocol("fp32", 16, 1, hardware="Xeon Gold 6138, 1 thread, batch 16")
ARM_PROTOCOL = Protocol("fp32", 16, 1, hardware="Graviton2, 1 thread, batch 16")
GPU_PROTOCOL = Protocol("fp16", 2048, None, half_mode="autocast", hardware="V100, AMP fp16", shrink_on_oom=True)
PROTOCOLS = {"cpu": CPU_PROTOCOL, "cuda": GPU_PROTOCOL}

#: LeViT against EfficientNet at matched accuracy, the paper's headline: (LeViT, EfficientNet)
HEADLINE_PAIRS = (("levit_128s", "efficientnet_b0"), ("levit_192", "efficientnet_b2"),
                  ("levit_256", "efficientnet_b3"))

#: the three systems of Table 3, as the ``list`` command titles them
SYSTEMS_TITLE = "paper throughput: V100 GPU, Xeon 6138 1 thread, Graviton2"


def protocol_flag_help() -> str:
    return (f"the paper's protocol: CPU {CPU_PROTOCOL.threads} thread, batch {CPU_PROTOCOL.batch_size}, "
            f"{CPU_PROTOCOL.precision}; CUDA AMP {GPU_PROTOCOL.precision}, batch {GPU_PROTOCOL.batch_size} "
            "(halved until it fits)")


def is_cpu_protocol(precision: str, threads: int, batch_size: int) -> bool:
    p = CPU_PROTOCOL
    return (precision, threads, batch_size) == (p.precision, p.threads, p.batch_size)


def paper_throughput(pub: Published, device: str, arch: str | None) -> tuple[float | None, str]:
    """The paper's images/s on the hardware that matches ``device``, and that hardware in words."""
    if device == "cuda":
        hw = f"{GPU_PROTOCOL.hardware}, batch {pub.gpu_batch}" if pub.gpu_batch else GPU_PROTOCOL.hardware
        return pub.gpu, hw
    if is_arm(arch):
        return pub.arm, ARM_PROTOCOL.hardware
    return pub.intel_cpu, CPU_PROTOCOL.hardware
