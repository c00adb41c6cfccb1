"""The steady heap (``allocator.steady``): large blocks stay on glibc's heap instead of being
mmapped anew, the user's own glibc settings are kept, and the setting is recorded and compared."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from levit_bench import allocator, sysinfo

FIXTURE = Path(__file__).parent / "fixtures" / "results-v6-2026-12-02.json"

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

#: in a fresh interpreter: allocate and free a 16 MiB block, then report whether that allocation
#: was a mapping of its own (a new anonymous region of /proc/self/maps, not the heap) and what steady() recorded
PROBE = r"""
import ctypes, json, sys
from levit_bench import allocator
record = allocator.steady() if sys.argv[1] == "steady" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def regions():  # anonymous mappings other than the heap (which a steady malloc grows instead)
    return {f[0] for f in (line.split() for line in open("/proc/self/maps")) if len(f) == 5}
before = regions()
p = libc.malloc(16 << 20)
ctypes.memset(p, 1, 16 << 20)
new = [r for r in regions() - before
       if int(r.split("-")[1], 16) - int(r.split("-")[0], 16) >= 16 << 20]
libc.free(p)
print(json.dumps({"mapped": bool(new), "record": record}))
"""


def probe(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if k not in (*allocator.ENVIRONMENT, "GLIBC_TUNABLES", allocator.OPT_OUT_ENV)}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**environ, **env}, timeout=60)
    return json.loads(out.stdout)


def test_a_large_block_is_its_own_mapping_by_default_and_on_the_heap_when_steady():
    assert probe("default")["mapped"] is True
    got = probe("steady")
    assert got["mapped"] is False
    assert got["record"] == {"library": got["record"]["library"], "steady": True,
                             "mmap_threshold": got["record"]["mmap_threshold"],
                             "trim_threshold": allocator.TRIM_THRESHOLD}
    # 1 GiB where glibc takes it (2.35 on), else glibc's 64-bit maximum; the probe's 16 MiB is below both
    assert got["record"]["mmap_threshold"] in (allocator.MMAP_THRESHOLD, allocator.FALLBACK_MMAP_THRESHOLD)


def test_the_users_own_glibc_settings_are_kept():
    got = probe("steady", MALLOC_MMAP_THRESHOLD_="131072")
    assert got["mapped"] is True and got["record"]["steady"] is False
    assert "MALLOC_MMAP_THRESHOLD_" in got["record"]["reason"]
    found = probe("steady", LEVIT_BENCH_ALLOCATOR="as-found")
    assert found["mapped"] is True and found["record"]["steady"] is False and "as-found" in found["record"]["reason"]
    tuned = probe("steady", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000")
    assert tuned["record"]["steady"] is False and "glibc.malloc.trim_threshold" in tuned["record"]["reason"]


def test_the_setting_is_recorded_and_runs_under_different_settings_are_told_apart():
    record = allocator.steady()
    assert allocator.steady() is record  # once per process
    assert sysinfo.collect()["allocator"] == record
    facts = {"cpu": "x", "allocator": {"steady": True}}
    assert sysinfo.machine_differences(facts, {**facts, "allocator": {"steady": False, "reason": "r"}}) == \
        ["allocator steady heap vs allocator as found"]
    assert sysinfo.machine_differences(facts, {"cpu": "x"}) == []  # an older file: not counted


def test_a_worker_of_a_steady_parent_is_steady_from_glibcs_own_variables():
    record = allocator.steady()
    env = allocator.worker_environment()
    if not record["steady"]:
        assert env == {}
        return
    assert env == {"MALLOC_MMAP_THRESHOLD_": str(record["mmap_threshold"]),
                   "MALLOC_TRIM_THRESHOLD_": str(allocator.TRIM_THRESHOLD)}
    got = probe("steady", **env)  # glibc applies them at start-up; the record says steady
    assert got["mapped"] is False and got["record"]["steady"] is True


def test_ab_and_compare_warn_when_the_heaps_differ():
    steady = {"steady": True}
    assert allocator.heaps_differ({"base": steady, "new": steady}) is None
    old = allocator.heaps_differ({"base": None, "new": steady})
    assert old and "base: no allocator record" in old and "new: the steady heap" in old


def test_compare_of_a_file_from_before_the_steady_heap_warns(tmp_path):
    from levit_bench import results
    from levit_bench.gate import compare_runs

    base = results.load(FIXTURE)
    new = results.load(FIXTURE)
    new.system = {**(new.system or {}), "allocator": {"steady": True}}
    (base.system or {}).pop("allocator", None)
    assert any("no allocator record" in w for w in compare_runs(base, new).warnings)
    assert not any("heap" in w for w in compare_runs(new, new).warnings)
