"""pytest-benchmark suite: record levit-bench's machine facts with every saved benchmark run."""
from __future__ import annotations

#: facts that identify the machine and software; not the ones that change run to run (clock, commit)
STABLE_FACTS = ("cpu", "arch", "physical_cores", "logical_cores", "cpu_flags", "memory_bytes", "versions")


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    """Saved runs (``--benchmark-autosave``) carry levit-bench's system facts; only stable ones, since
    ``--benchmark-compare`` warns whenever machine_info differs."""
    from levit_bench import sysinfo

    info = sysinfo.collect()
    facts = {k: info.get(k) for k in STABLE_FACTS}
    facts["gpu"] = (info.get("gpu") or {}).get("name")
    machine_info["levit_bench"] = facts
