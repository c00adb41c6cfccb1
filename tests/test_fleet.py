"""Plans run for real (issue 23): sharded three ways and merged, interrupted and resumed, and on a
one-node Slurm cluster.  Tiny plans (64 px, one round, 0.05 s), sharing the session's export cache;
what is asserted is which entries were measured, never how fast."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from levit_bench import results
from levit_bench.cli import main

from .conftest import GUARD_S, signal_after_a_round
from . import slurm_cluster

REPO = Path(__file__).resolve().parent.parent
TINY = """\
[plan]
models = ["levit_128s", "levit_128", "levit_192"]
backends = ["torch", "onnxruntime"]
batch_sizes = [1, 2]
threads = 1
img_size = 64

[timing]
min_time = 0.05
warmup = 0
min_calls = 3
rounds = 1
"""


def steps(path: Path) -> set[tuple]:
    return {(e.model, e.precision, e.backend, e.batch_size) for e in results.load(path).results}


def unsharded(capsys, plan: Path, *flags: str) -> dict:
    assert main(["plan", str(plan), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # three tiny runs (one ONNX export per model, shared through the export cache)
def test_a_plan_sharded_three_ways_merges_into_the_unsharded_plan(tmp_path, capsys, monkeypatch, cache_args):
    plan = tmp_path / "plan.toml"
    plan.write_text(TINY)
    whole = unsharded(capsys, plan, "--shards", "3", *cache_args)
    outs = [tmp_path / f"shard-{i}.json" for i in range(3)]
    # shard 0 by the flag, shard 1 by a Slurm array job's variables, shard 2 by a CI matrix's variable
    assert main(["run", str(plan), "--shard", "0/3", "--out", str(outs[0]), "--quiet", *cache_args]) == 0
    with monkeypatch.context() as m:
        m.setenv("SLURM_ARRAY_TASK_ID", "1")
        m.setenv("SLURM_ARRAY_TASK_COUNT", "3")
        m.setenv("SLURM_ARRAY_TASK_MIN", "0")
        assert main(["run", str(plan), "--shard", "auto", "--out", str(outs[1]), "--quiet", *cache_args]) == 0
    with monkeypatch.context() as m:
        m.setenv("LEVIT_BENCH_SHARD", "2/3")
        assert main(["run", str(plan), "--out", str(outs[2]), "--quiet", *cache_args]) == 0
    capsys.readouterr()
    parts = [steps(o) for o in outs]
    assert all(parts) and sum(map(len, parts)) == 12 and len(set().union(*parts)) == 12  # disjoint, covering
    for i, o in enumerate(outs):
        rec = results.load(o)
        assert rec.complete and rec.config["plan"]["hash"] == whole["hash"]
        assert rec.config["plan"]["shard"] == {"index": i, "count": 3}
        assert parts[i] == {(e["model"], e["precision"], e["backend"], e["batch_size"])
                            for e in whole["entries"] if e["shard"] == i}
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, outs), "-o", str(merged)]) == 0
    rec = results.load(merged)
    assert steps(merged) == {(e["model"], e["precision"], e["backend"], e["batch_size"]) for e in whole["entries"]}
    assert rec.config["plan"]["hash"] == whole["hash"] and rec.complete
    assert all(e.status == "ok" for e in rec.results), [e.reason for e in rec.results]
    assert main(["report", str(merged), "-o", str(tmp_path / "REPORT.md")]) == 0
    assert "levit_192" in (tmp_path / "REPORT.md").read_text()
    single = tmp_path / "unsharded.json"  # the same plan run whole: the same entries and hash
    assert main(["run", str(plan), "--out", str(single), "--quiet", *cache_args]) == 0
    assert steps(single) == steps(merged) and results.load(single).config["plan"]["hash"] == whole["hash"]
    assert results.load(single).config["plan"]["shard"] is None


@pytest.mark.slow  # worker processes start an interpreter each
def test_a_shard_in_worker_processes_prepares_only_its_entries(tmp_path, capsys, cache_args):
    plan = tmp_path / "plan.toml"
    plan.write_text(TINY.replace('["torch", "onnxruntime"]', '["torch"]').replace(', "levit_192"', ""))
    whole = unsharded(capsys, plan, "--shards", "2", *cache_args)
    out = tmp_path / "s1.json"
    assert main(["run", str(plan), "--shard", "1/2", "--processes", "2", "--out", str(out), "--quiet", *cache_args]) == 0
    assert steps(out) == {(e["model"], e["precision"], e["backend"], e["batch_size"])
                          for e in whole["entries"] if e["shard"] == 1}
    assert all(e.status == "ok" for e in results.load(out).results)


def _first_chunk_done(out: Path) -> Callable[[], bool]:
    """Whether ``out`` holds an entry timed to the end (the first chunk done)."""
    def done() -> bool:
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError):
            return False
        return any(not any(n.startswith("interrupted") for n in e["notes"]) for e in data["results"])

    return done


@pytest.mark.slow  # two runs timing 1.6 s per entry (below the 2 s at which a run measures the GEMM peak)
def test_resume_after_sigint_measures_only_what_is_missing(tmp_path, cache_args):
    plan = tmp_path / "plan.toml"
    plan.write_text('[plan]\nmodels = ["levit_128s"]\nbackends = ["torch"]\nbatch_sizes = [1, 2]\nthreads = 1\n'
                    "img_size = 64\nchunk = 1\n\n[timing]\nmin_time = 1.6\nwarmup = 0\nrounds = 8\nseed = 3\n")
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "levit_bench.cli", "run", str(plan), "--out", str(out), *cache_args]
    code, err = signal_after_a_round(cmd, signal.SIGINT, armed=_first_chunk_done(out))
    assert code == 130, err
    before = results.load(out)
    assert not before.complete
    finished = [e for e in before.results if not any(n.startswith("interrupted") for n in e.notes)]
    assert [e.batch_size for e in finished] == [1]  # the first chunk; the second was cut short
    assert all(e.batch_size == 2 and len(e.timing.rounds) < 8 for e in before.results if e not in finished)
    resumed = subprocess.run([sys.executable, "-m", "levit_bench.cli", "run", str(plan), "--resume", str(out),
                              "--quiet", *cache_args], capture_output=True, text=True, timeout=GUARD_S)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 entries to measure, 1 kept" in resumed.stderr
    after = results.load(out)
    assert after.complete and [e.batch_size for e in after.results] == [1, 2]
    assert after.results[0].timing.samples_s == finished[0].timing.samples_s  # kept, not measured again
    assert len(after.results[1].timing.rounds) == 8 and not any(n.startswith("interrupted") for n in after.results[1].notes)
    assert after.results[1].group > after.results[0].group  # timed apart: never paired with the kept entry
    assert after.config["plan"]["hash"] == before.config["plan"]["hash"] and len(after.config["resumed"]) == 1


@pytest.fixture
def slurm(tmp_path_factory):
    cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    if isinstance(cluster, str):
        pytest.skip(cluster)
    yield cluster
    cluster.stop()


@pytest.mark.slow  # a Slurm array of three tiny shards
def test_a_slurm_array_job_runs_the_plan_and_merges(tmp_path, capsys, slurm, export_cache):
    plan = tmp_path / "plan.toml"
    plan.write_text(TINY)
    whole = unsharded(capsys, plan, "--cache-dir", str(export_cache))
    outs = tmp_path / "shards"
    outs.mkdir()
    script = tmp_path / "levit-bench.sbatch"
    script.write_text(f"""#!/bin/bash
#SBATCH --job-name=levit-bench
#SBATCH --cpus-per-task=1
#SBATCH --output={tmp_path}/slurm-%A_%a.out
cd {REPO}
export PYTHONPATH={REPO} OMP_WAIT_POLICY=PASSIVE LEVIT_BENCH_NO_PROGRESS=1
exec {sys.executable} -m levit_bench.cli run {plan} --shard auto --cache-dir {export_cache} \\
    --out {outs}/shard-$SLURM_ARRAY_TASK_ID.json --quiet
""")
    started = time.monotonic()
    tasks = slurm.run_array(script, 3, GUARD_S)
    took = time.monotonic() - started
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("slurm-*.out")))
    assert tasks == {i: ("COMPLETED", "0:0") for i in range(3)}, f"{tasks}\n{logs}\n{slurm.log_tail()}"
    files = sorted(outs.glob("shard-*.json"))
    assert len(files) == 3, logs
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, files), "-o", str(merged)]) == 0
    rec = results.load(merged)
    assert steps(merged) == {(e["model"], e["precision"], e["backend"], e["batch_size"]) for e in whole["entries"]}
    assert rec.config["plan"]["hash"] == whole["hash"]
    assert sorted(s["index"] for s in rec.config["plan"]["shards"]) == [0, 1, 2]
    print(f"slurm array of 3 shards: {took:.0f} s")
