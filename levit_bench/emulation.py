"""Is this Python process running under user-mode emulation (qemu-user)?  Detected, never a flag.

Timings measured under emulation say nothing about the emulated CPU (GEMM-heavy code runs about
200x slower under qemu than natively, convolutions about 30x), so a result records it.  Three
signals from the kernel, strongest first; the first one that can speak decides:

1. **The kernel's own name for this process's executable.**  qemu-user intercepts
   ``readlink("/proc/self/exe")`` (and ``/proc/<pid>/exe``, ``/proc/self/maps``, ``auxv``...) and
   answers for the guest program, so the obvious path lies.  It recognises those paths by their
   *string*, though: ``readlinkat(open("/proc"), "self/exe")`` goes straight to the kernel, which
   names the interpreter that really runs, ``qemu-aarch64-static`` (or binfmt's ``qemu-aarch64``).
   Natively both answers are the Python binary.  Verified with qemu 7.2 in an arm64 chroot on x86-64.
2. **The kernel's architecture** (``/proc/sys/kernel/arch``, Linux >= 6.1, not emulated by qemu)
   against the process's (``platform.machine()``, which qemu answers with the guest's): another
   family means another instruction set.  A 32-bit process on its own 64-bit kernel (i686 on
   x86_64, armv7l/armv8l on aarch64) is native, hence families rather than exact names.  Speaks
   when a newer qemu closes the loophole of 1, or for an emulator that is not qemu.
3. **/proc/cpuinfo describing another family** than ``platform.machine()``: qemu 7.2 passes the
   host's x86 cpuinfo through to an aarch64 guest.  Last, because qemu >= 8.1 writes an ARM-looking
   one for ARM guests and a chroot may bind a fake one over it (ONNX Runtime crashes under qemu 7.2
   reading an x86 cpuinfo), and it is what older kernels (no ``kernel/arch``) leave.

Rejected: the ELF auxiliary vector (qemu builds a plausible guest one: ``AT_PLATFORM`` "aarch64",
guest ``AT_HWCAP``); ``/proc/sys/fs/binfmt_misc/qemu-*`` (host-side registrations: they say what
*could* be emulated, and are there for every native process too); ``QEMU_*`` environment variables
(set by users, absent when binfmt starts qemu); timing (a slow machine is not an emulated one).
With ``/proc`` not mounted nothing can be told, and the answer is None.
"""
from __future__ import annotations

import os
import platform
import re

#: where procfs is mounted (tests point it at a fake tree)
PROC = "/proc"


def _family(machine: str | None) -> str | None:
    """The instruction-set family of a ``uname -m``/kernel arch name (x86, arm, ppc, ...), or None."""
    if not machine:
        return None
    m = machine.strip().lower()
    if m in ("x86_64", "amd64", "x64", "x86") or re.fullmatch(r"i[3-6]86", m):
        return "x86"
    for prefix, family in (("aarch64", "arm"), ("arm", "arm"), ("ppc", "ppc"), ("powerpc", "ppc"),
                           ("riscv", "riscv"), ("s390", "s390"), ("mips", "mips"), ("loongarch", "loongarch"),
                           ("sparc", "sparc")):
        if m.startswith(prefix):
            return family
    return m


def _kernel_exe() -> str | None:
    """The executable the kernel says this process runs, read past qemu's ``/proc/self`` emulation."""
    try:
        fd = os.open(PROC, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        return os.readlink("self/exe", dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _kernel_arch() -> str | None:
    try:
        with open(os.path.join(PROC, "sys", "kernel", "arch")) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _cpuinfo_family() -> str | None:
    """x86 or arm when /proc/cpuinfo clearly describes one of them, else None."""
    try:
        with open(os.path.join(PROC, "cpuinfo"), errors="replace") as f:
            text = f.read(65536)
    except OSError:
        return None
    keys = {line.split(":", 1)[0].strip().lower() for line in text.splitlines() if ":" in line}
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.MULTILINE)
    if vendor and "flags" in keys and not vendor.group(1).upper().startswith("IBM"):  # s390 has a vendor_id too
        return "x86"
    if "cpu implementer" in keys or ("features" in keys and "cpu architecture" in keys):
        return "arm"
    return None


def detect_emulation() -> str | None:
    """``"qemu-user"`` when this process runs under qemu's user-mode emulation, ``"user-mode"`` under
    another emulator of a foreign instruction set, None when it runs natively (or nothing can tell)."""
    exe = _kernel_exe()
    if exe and os.path.basename(exe.removesuffix(" (deleted)")).lower().startswith("qemu-"):
        return "qemu-user"
    mine = _family(platform.machine())
    if mine is None:
        return None
    kernel = _family(_kernel_arch())
    if kernel is not None:
        return None if kernel == mine else "user-mode"
    cpu = _cpuinfo_family()
    if cpu is not None and cpu != mine:
        return "user-mode"
    return None


__all__ = ["detect_emulation"]
