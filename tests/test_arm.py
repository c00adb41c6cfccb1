"""The ARM path without an ARM machine: the default backends on aarch64, and emulation detection.

The real aarch64 run (under qemu-user) is ``benchmarks/arm/run_emulated.sh``; its log is in docs/perf.
Here ``platform.machine`` is patched and ``emulation.PROC`` points at a fake /proc tree.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from levit_bench import emulation, sysinfo
from levit_bench.backends import default_backends
from levit_bench.emulation import detect_emulation

X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu sse avx2\n\n"
ARM_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
               "CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n")
S390_CPUINFO = "vendor_id       : IBM/S390\n# processors    : 2\nfeatures\t: esan3 zarch\n"


@pytest.mark.parametrize("machine", ["aarch64", "arm64", "AArch64"])
def test_arm_defaults_put_torchscript_first(monkeypatch, machine):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    names = default_backends("cpu")
    assert names[0] == "torchscript"  # the paper's ARM protocol
    assert "onnxruntime" in names
    assert "openvino" not in names  # an x86 runtime first: its aarch64 build is not a default


def test_x86_defaults_unchanged(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    names = default_backends("cpu")
    assert names[0] == "torch" and "openvino" in names


def fake_proc(root: Path, *, exe: str | None, arch: str | None, cpuinfo: str | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if exe is not None:
        (root / "self").mkdir()
        (root / "self" / "exe").symlink_to(exe)
    if arch is not None:
        (root / "sys" / "kernel").mkdir(parents=True)
        (root / "sys" / "kernel" / "arch").write_text(arch + "\n")
    if cpuinfo is not None:
        (root / "cpuinfo").write_text(cpuinfo)
    return root


@pytest.mark.parametrize(
    ("machine", "exe", "arch", "cpuinfo", "want"),
    [
        # qemu 7.2 in an arm64 chroot on x86-64 (what run_emulated.sh sees), cpuinfo faked or not
        ("aarch64", "/usr/bin/qemu-aarch64-static", "x86_64", ARM_CPUINFO, "qemu-user"),
        ("aarch64", "/usr/bin/qemu-aarch64-static", "x86_64", X86_CPUINFO, "qemu-user"),
        ("aarch64", "/usr/bin/qemu-aarch64 (deleted)", None, None, "qemu-user"),
        # same-architecture qemu (a debugging set-up) is emulation too
        ("x86_64", "/usr/bin/qemu-x86_64", "x86_64", X86_CPUINFO, "qemu-user"),
        # a qemu that answers self/exe for the guest even through a dirfd: the kernel's arch tells
        ("aarch64", "/usr/bin/python3.11", "x86_64", ARM_CPUINFO, "user-mode"),
        # x86 Python on an ARM kernel under another translator (exe not named qemu-*)
        ("x86_64", "/usr/bin/python3.11", "aarch64", ARM_CPUINFO, "user-mode"),
        # native, 64- and 32-bit processes on their own kernels
        ("aarch64", "/usr/bin/python3.11", "aarch64", ARM_CPUINFO, None),
        ("x86_64", "/usr/bin/python3.11", "x86_64", X86_CPUINFO, None),
        ("armv8l", "/usr/bin/python3.11", "aarch64", ARM_CPUINFO, None),
        ("i686", "/usr/bin/python3.11", "x86_64", X86_CPUINFO, None),
        # kernels older than 6.1 (no kernel/arch): cpuinfo is the last resort
        ("aarch64", "/usr/bin/python3.11", None, X86_CPUINFO, "user-mode"),
        ("aarch64", "/usr/bin/python3.11", None, ARM_CPUINFO, None),
        ("s390x", "/usr/bin/python3.11", None, S390_CPUINFO, None),  # s390's vendor_id is not x86's
        # a kernel arch that agrees wins over a cpuinfo that does not
        ("aarch64", "/usr/bin/python3.11", "aarch64", X86_CPUINFO, None),
        # nothing readable: cannot tell
        ("aarch64", None, None, None, None),
    ],
    ids=["qemu7-fake-cpuinfo", "qemu7-host-cpuinfo", "qemu-old-kernel", "qemu-same-arch", "qemu-patched-exe",
         "other-translator", "native-aarch64", "native-x86_64", "compat-armv8l", "compat-i686",
         "old-kernel-x86-cpuinfo", "old-kernel-arm-cpuinfo", "old-kernel-s390", "kernel-arch-wins", "nothing-readable"],
)
def test_detect_emulation_signals(monkeypatch, tmp_path, machine, exe, arch, cpuinfo, want):
    monkeypatch.setattr(emulation, "PROC", str(fake_proc(tmp_path / "proc", exe=exe, arch=arch, cpuinfo=cpuinfo)))
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert detect_emulation() == want


def test_no_proc_means_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(emulation, "PROC", str(tmp_path / "absent"))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert detect_emulation() is None


@pytest.mark.skipif(not Path("/proc/self/exe").exists(), reason="needs Linux procfs")
def test_native_host_is_not_emulated():
    """This suite runs natively: the dirfd-relative readlink reaches the kernel and names this Python."""
    assert emulation._kernel_exe() == os.path.realpath(sys.executable)
    assert detect_emulation() is None


def test_sysinfo_records_emulation(monkeypatch):
    assert sysinfo.collect()["emulated"] is None
    monkeypatch.setattr(sysinfo, "detect_emulation", lambda: "qemu-user")
    assert sysinfo.collect()["emulated"] == "qemu-user"


# ---------------------------------------------------------------------------------------------
# emulated timings are never shown as speed (the committed emulated run as the example)

EMULATED = Path(__file__).resolve().parent.parent / "results" / "arm-emulated-2026-11-27.json"


def test_the_report_shows_parity_not_speed_for_an_emulated_machine():
    from levit_bench import report
    from levit_bench.results import load

    record = load(EMULATED)
    assert record.system["emulated"] == "qemu-user" and record.system["arch"] == "aarch64"
    md = report.build_report([record], plot_name=None).markdown
    assert "parity checked on aarch64 (emulated)" in md and "Graviton2" in md
    for e in record.results:  # no emulated images/s anywhere in the report
        assert f"{e.timing.images_per_second:.3g}" not in md and f"{e.timing.images_per_second:.2f}" not in md
    assert not report.headlines(report.group_by_machine([record]))
    assert not report.speed_accuracy_panels(report.group_by_machine([record]))


def test_compare_refuses_emulated_files(capsys):
    from levit_bench.cli import main

    assert main(["compare", str(EMULATED), str(EMULATED)]) == 2
    assert "emulation" in capsys.readouterr().err


def test_the_terminal_table_shows_parity_not_speed_under_emulation():
    from rich.console import Console

    from levit_bench.cli import render
    from levit_bench.results import load

    record = load(EMULATED)
    con = Console(width=200, record=True)
    con.print(render.results_table(record.results, emulated="qemu-user"))
    text = con.export_text()
    assert "not speed" in text and "× torch" not in text
    for e in record.results:
        assert f"{e.timing.images_per_second:.3g}" not in text and f"{e.timing.images_per_second:.2f}" not in text


def test_cpu_brand_and_flags_come_from_proc_cpuinfo_where_it_names_them(tmp_path):
    """x86 Linux: /proc/cpuinfo's first processor (no py-cpuinfo probe, which sleeps a second);
    an ARM or s390 cpuinfo names no brand or no flags, so py-cpuinfo answers there."""
    two = X86_CPUINFO + X86_CPUINFO.replace("processor\t: 0", "processor\t: 1").replace("avx2", "avx512f")
    (tmp_path / "x86").write_text(two)
    assert sysinfo._proc_cpuinfo(str(tmp_path / "x86")) == {"brand_raw": "Intel(R) Xeon(R)",
                                                             "flags": ["avx2", "fpu", "sse"]}
    for name, text in (("arm", ARM_CPUINFO), ("s390", S390_CPUINFO)):
        (tmp_path / name).write_text(text)
        assert sysinfo._proc_cpuinfo(str(tmp_path / name)) is None
    assert sysinfo._proc_cpuinfo(str(tmp_path / "missing")) is None


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or platform.machine() not in ("x86_64", "AMD64"),
                    reason="x86 Linux only")
def test_the_brand_and_flags_are_py_cpuinfos_own():
    cpuinfo = pytest.importorskip("cpuinfo")
    theirs, ours = cpuinfo.get_cpu_info(), sysinfo._cpu_info()
    assert ours["brand_raw"] == theirs["brand_raw"]
    # py-cpuinfo adds CPUID's names to the kernel's; the kernel's are what this process can use
    assert ours["flags"] and set(ours["flags"]) <= set(theirs["flags"])
