"""Issue 15, the command-line side: results never lost or replaced unasked, conflicting or
unbounded options refused before anything is measured, one entry's failure never the run's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from levit_bench import results, results_writer
from levit_bench.cli import main
from levit_bench.cli.front import output_path

FAST = ["--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--rounds", "2"]
# cache_args (conftest): the session's shared export cache


def _run(tmp_path, *argv, cache=None) -> int:
    return main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--threads", "1", *FAST,
                 *(cache or []), *argv])


def _concurrently(cmd: list[str], n: int) -> list[str]:
    """The stdout of ``n`` processes running ``cmd``, started together (their start-ups, mostly
    importing torch, overlap instead of adding up); each must exit 0."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate() for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return [out for out, _err in outs]


# 1. a bad-input run must not touch an existing results file; an existing file is never replaced unasked

def test_bad_input_leaves_an_existing_results_file_alone(tmp_path, capsys):
    keep = tmp_path / "keep.json"
    keep.write_text('{"precious": true}')
    assert _run(tmp_path, "--img-size", "17", "--out", str(keep)) == 2
    assert keep.read_text() == '{"precious": true}'


@pytest.mark.slow  # a whole run, with --force
def test_an_existing_results_file_is_refused_without_force(tmp_path, capsys, cache_args):
    keep = tmp_path / "keep.json"
    keep.write_text('{"precious": true}')
    assert _run(tmp_path, "--out", str(keep), cache=cache_args) == 2
    assert "--force" in capsys.readouterr().err and keep.read_text() == '{"precious": true}'
    assert _run(tmp_path, "--out", str(keep), "--force", cache=cache_args) == 0
    assert results.load(keep).complete


# 2. concurrent runs: unique default names, and a second writer to one file is refused

def test_default_names_are_unique_per_process(tmp_path):
    names = {output_path(str(tmp_path), "cpu") for _ in range(50)}
    assert len(names) == 50 and all(p.parent == tmp_path and p.suffix == ".json" for p in names)


@pytest.mark.slow
def test_default_names_are_unique_between_processes():
    code = "from levit_bench.cli.front import output_path; print(output_path('r', 'cpu').name)"
    others = set(_concurrently([sys.executable, "-c", code], 2))  # two runs started at once
    assert len(others) == 2


def test_a_second_writer_to_the_same_file_is_refused(tmp_path):
    out = tmp_path / "r.json"
    first = results_writer.ResultsWriter(out).claim()
    try:
        with pytest.raises(results.UserError, match="another levit-bench run is writing"):
            results_writer.ResultsWriter(out, replace=True).claim()
    finally:
        first.release()
    results_writer.ResultsWriter(out, replace=True).claim().release()  # free again once released


# 3. write errors are one line, exit 2

def test_out_naming_a_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "r.json"
    folder.mkdir()
    assert _run(tmp_path, "--out", str(folder)) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err


@pytest.mark.slow  # a whole run
def test_a_failing_write_mid_run_exits_2_and_keeps_the_last_save(tmp_path, capsys, monkeypatch, cache_args):
    out = tmp_path / "r.json"
    real_save = results.RunRecord.save
    calls = {"n": 0}

    def failing_save(self, path):
        calls["n"] += 1
        if calls["n"] > 1:  # the first save (the empty record) succeeds, then the disk is full
            raise OSError(28, "No space left on device")
        return real_save(self, path)

    monkeypatch.setattr(results.RunRecord, "save", failing_save)
    assert _run(tmp_path, "--out", str(out), cache=cache_args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert json.loads(out.read_text())["results"] == []  # the last complete save is intact


# 6. --paper and explicit values that contradict it

@pytest.mark.parametrize("flag, value", [("--threads", "2"), ("--precision", "bf16"), ("--batch-size", "64")])
def test_paper_conflicts_are_named(flag, value, tmp_path, capsys):
    assert main(["--paper", flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--paper" in err and flag in err
    assert not list(tmp_path.iterdir())


# 7, 8, 15. values that would hang, run nothing, or be taken for something else

@pytest.mark.parametrize("argv, says", [
    (["--warmup", "inf"], "--warmup must be"),
    (["--min-time", "inf"], "--min-time must be"),
    (["--min-time", "nan"], "--min-time must be"),
    (["--min-time", "100000"], "at most"),
    (["--model", ""], "--model needs at least one name"),
    (["--backend", " , "], "--backend needs at least one name"),
    (["--compile-mode", "fastest"], "invalid choice"),
    (["--max-time", "10"], "give --target-ci too"),
])
def test_unbounded_or_empty_values_exit_2(argv, says, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert says in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_out_with_an_upper_case_suffix_is_a_file(tmp_path):
    assert output_path(str(tmp_path / "R.JSON"), "cpu") == tmp_path / "R.JSON"


def test_report_to_a_folder_named_md_writes_nothing(tmp_path, capsys):
    fixture = Path(__file__).parent / "fixtures" / "results-v1-2026-11-27.json"
    target = tmp_path / "dir.md"
    target.mkdir()
    assert main(["report", str(fixture), "-o", str(target)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [target] and not list(target.iterdir())


# 9. a batch that cannot be allocated fails its entry, not the run

@pytest.mark.slow
def test_a_huge_batch_fails_that_entry_and_the_run_goes_on(tmp_path, cache_args):
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1000000,1", "--threads", "1",
                 *FAST, "--out", str(out), *cache_args]) == 0
    entries = {e.batch_size: e for e in results.load(out).results}
    assert entries[1000000].status == "failed" and entries[1000000].reason == "out of memory"
    assert entries[1].status == "ok"


# 10. weights that fit only some models are refused before anything is measured

def test_weights_that_fit_one_model_only_are_refused_up_front(tmp_path, capsys):
    import levit_bench as lb

    weights = tmp_path / "l128s.pth"
    torch.save(lb.create_model("levit_128s").state_dict(), weights)
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s,levit_256", "--weights", str(weights), "--out", str(out)]) == 2
    assert "does not fit levit_256" in capsys.readouterr().err
    assert not out.exists()


# 11. the cache location is checked up front

def test_a_cache_dir_that_is_a_file_exits_2_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("x")
    assert _run(tmp_path, "--cache-dir", str(blocker), "--out", str(tmp_path / "r.json")) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


# 12. more threads than cores: said, not silent

def test_oversubscribed_threads_are_warned_about(tmp_path, capsys):
    from levit_bench.cli.front import resolve_threads

    assert resolve_threads(4 * (os.cpu_count() or 1)) == 4 * (os.cpu_count() or 1)
    assert "more than this machine's" in capsys.readouterr().err


# 16. random weights are seeded per model: a second run finds its exports in the cache

@pytest.mark.slow
def test_random_weights_are_the_same_in_every_process():
    code = ("import levit_bench as lb; from levit_bench.models.weights import weights_hash; "
            "print(weights_hash(lb.create_model('efficientnet_b0')))")
    hashes = set(_concurrently([sys.executable, "-c", code], 2))
    assert len(hashes) == 1 and len(next(iter(hashes)).strip()) >= 16


@pytest.mark.slow
def test_a_second_run_reuses_every_export(tmp_path, cache_args):
    """(In the shared export cache: the first run may itself reuse what an earlier test exported.)"""
    argv = ["--model", "levit_128s", "--backend", "torchscript,onnxruntime", "--batch-size", "2", "--threads", "1",
            *FAST, *cache_args]
    assert main([*argv, "--out", str(tmp_path / "a.json")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b.json")]) == 0
    second = results.load(tmp_path / "b.json").results
    assert second and all(e.status == "ok" and e.export.export_reused for e in second)
    assert main([*argv[:3], "torch", *argv[4:], "--out", str(tmp_path / "c.json")]) == 0
    (eager,) = results.load(tmp_path / "c.json").results
    assert eager.export.export_reused is None  # nothing to export, nothing to reuse


# 4, through the command line: no figure labelled with a precision the runtime did not use

@pytest.mark.slow  # a whole run (the skip itself: test_reliability_runtime, in the fast tier)
def test_openvino_bf16_on_a_cpu_without_bf16_is_skipped_not_mislabelled(tmp_path, monkeypatch, cache_args):
    from levit_bench.backends import openvino as ov_backend

    monkeypatch.setattr(ov_backend, "optimization_capabilities", lambda: ("FP32", "INT8"))
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "openvino", "--precision", "bf16", "--batch-size", "1",
                 "--threads", "1", *FAST, "--out", str(out), *cache_args]) == 0
    (entry,) = results.load(out).results
    assert entry.status == "skipped" and "bf16" in entry.reason and entry.timing is None


@pytest.mark.slow
def test_target_ci_names_the_entries_that_did_not_get_there(tmp_path, capsys, cache_args):
    """An unreachable target: rounds are added until --max-time.  The two planned rounds take about
    0.3 s; --max-time 6 leaves them twenty times that before any round could be added, so a loaded
    machine still gets extra rounds.  (Adding rounds is checked exactly, on a fake clock, in
    test_measurement.py; here the command line's plumbing and note.)"""
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--threads", "1",
                 "--min-time", "0.05", "--warmup", "0", "--rounds", "2", "--target-ci", "0.001", "--max-time", "6",
                 "--out", str(out), *cache_args]) == 0
    (entry,) = results.load(out).results
    assert len(entry.timing.rounds) > 2 and any("did not reach --target-ci" in n for n in entry.notes)
    assert "did not reach --target-ci" in capsys.readouterr().out
