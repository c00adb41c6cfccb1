"""A one-node Slurm cluster on localhost for the fleet tests: munged with its own key and socket,
slurmctld and slurmd from a generated slurm.conf in a temporary folder (no cgroups: proctrack/linuxproc,
task/none), run as root.  ``start`` returns the cluster or the reason it cannot start (the test
skips with it); ``stop`` ends the daemons it started, by their process ids."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol")
START_S = 60  # seconds a daemon may take to answer: only a guard against a hang


@dataclass
class Cluster:
    root: Path
    conf: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log", "slurmctld.out", "slurmd.out", "munged.out"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def run_array(self, script: Path, tasks: int, guard_s: float) -> dict[int, tuple[str, str]]:
        """Submit ``script`` as an array job of ``tasks`` tasks, wait until none is queued or running,
        and return each task's final state and exit code (``scontrol``'s ``JobState``, ``ExitCode``).

        Polled every quarter second: ``sbatch --wait`` polls at intervals that grow to 10 s, and
        left the test waiting 20 s after the last shard had ended; ``guard_s`` only guards a hang."""
        job = subprocess.run(["sbatch", "--parsable", f"--array=0-{tasks - 1}", str(script)], env=self.env,
                             capture_output=True, text=True, timeout=guard_s, check=True).stdout.strip()
        job = job.split(";")[0]
        deadline = time.monotonic() + guard_s
        while subprocess.run(["squeue", "-h", "-j", job], env=self.env, capture_output=True, text=True,
                             timeout=guard_s).stdout.strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"array job {job} still queued or running after {guard_s:.0f} s")
            time.sleep(0.25)
        shown = subprocess.run(["scontrol", "-o", "show", "job", job], env=self.env, capture_output=True, text=True,
                               timeout=guard_s, check=True).stdout
        fields = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in shown.splitlines() if line.strip()]
        return {int(f["ArrayTaskId"]): (f["JobState"], f["ExitCode"]) for f in fields if "ArrayTaskId" in f}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(root: Path, host: str, sock: Path) -> str:
    cpus = os.cpu_count() or 1
    import psutil

    memory_mb = max(1, int(psutil.virtual_memory().total / 2**20 * 0.8))
    return "\n".join([
        "ClusterName=levitbench", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", f"AuthInfo=socket={sock}", "CredType=cred/munge",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "SchedulerType=sched/builtin", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "MpiDefault=none", "ReturnToService=2",
        "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0", "MinJobAge=300", "KillWait=5", "Waittime=0",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        ""])


def start(root: Path) -> Cluster | str:
    """The running cluster, or why it could not start (a reason to skip with)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"Slurm/munge binaries missing: {', '.join(missing)} (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the one-node Slurm cluster runs its daemons as root (SlurmdUser=root); not root here"
    host = socket.gethostname().split(".")[0]
    for d in ("state", "spool", "munge"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o711)
    key, sock = root / "munge" / "munge.key", root / "munge" / "munge.socket"
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, host, sock))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(root, conf, env)
    try:
        subprocess.run(["mungekey", "--create", "--keyfile", str(key), "--force"], check=True, capture_output=True,
                       timeout=START_S)
        cluster.procs.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
             f"--pid-file={root / 'munge' / 'munged.pid'}", f"--seed-file={root / 'munge' / 'munged.seed'}",
             f"--log-file={root / 'munged.log'}"], stdout=_out(root, "munged"), stderr=subprocess.STDOUT))
        if not _wait(lambda: sock.exists(), cluster):
            raise RuntimeError("munged did not open its socket")
        cluster.procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=env,
                                              stdout=_out(root, "slurmctld"), stderr=subprocess.STDOUT))
        cluster.procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf), "-N", host], env=env,
                                              stdout=_out(root, "slurmd"), stderr=subprocess.STDOUT))
        if not _wait(lambda: _idle(env), cluster):
            raise RuntimeError("the node did not come up idle")
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        reason = f"the one-node Slurm cluster did not start: {exc}\n{cluster.log_tail()}"
        cluster.stop()
        return reason
    return cluster


def _out(root: Path, name: str):
    return open(root / f"{name}.out", "ab")  # noqa: SIM115 - the daemon's stream, kept open for it


def _idle(env: dict[str, str]) -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and "idle" in out.stdout


def _wait(ready, cluster: Cluster) -> bool:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in cluster.procs):
            return False
        if ready():
            return True
        time.sleep(0.5)
    return False
