"""Issue 25, the defects of the front door: D13, D18–D21, D26, D27, D29 (each test fails on the
main of 2026-12-01, before this change)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from levit_bench import zoo
from levit_bench.cli import main
from levit_bench.results import RunRecord
from levit_bench.results_writer import ResultsWriter


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# D13: --force replaced the old file at start: Ctrl-C during preparation left an empty record there
def test_force_keeps_the_old_file_until_something_is_measured(tmp_path):
    old = tmp_path / "r.json"
    old.write_text('{"precious": true}')
    writer = ResultsWriter(old, replace=True).claim()
    try:
        writer.save(RunRecord(system={}, config={}))  # the run's first save: nothing measured yet
        assert old.read_text() == '{"precious": true}'
        writer.save(RunRecord(system={}, config={}, results=[], accuracy=[], profiles=[{"categories": {}}]))
        assert json.loads(old.read_text())["tool"] == "levit-bench"  # replaced once there is content
    finally:
        writer.release()


# D18–D21: silent caps and unreplayable seeds
@pytest.mark.parametrize("argv, words", [
    (["--rounds", "100000"], "--rounds must be at most 1,000"),  # D18
    (["--min-calls", "10000000"], "--min-calls must be at most 100,000"),  # D19
    (["--target-ci", "0"], "--target-ci must be a percentage > 0"),  # D20
])
def test_unbounded_or_meaningless_values_are_refused(tmp_path, capsys, argv, words):
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "torch", "--out", str(out), *argv]) == 2
    assert words in _err(capsys) and not out.exists()


def test_seed_zero_is_accepted_and_recorded(tmp_path, capsys):  # D21: drawn seeds include 0
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--threads", "1",
                 "--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--rounds", "2", "--seed", "0",
                 "--cache-dir", str(tmp_path / "c"), "--quiet", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["config"]["schedule"]["seed"] == 0


# D26: a folder given as --weights
def test_weights_naming_a_folder_says_so(tmp_path, capsys):
    assert main(["--model", "levit_128s", "--weights", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    assert "is a folder" in _err(capsys)


# D27: NaN or integer weights were accepted up front; every entry failed later without naming them
@pytest.mark.parametrize("damage, words", [
    (lambda sd, k: sd[k].fill_(math.nan), "NaN or inf"),
    (lambda sd, k: sd.__setitem__(k, sd[k].to(torch.int64)), "int64"),
])
def test_damaged_weights_are_refused_before_anything_is_measured(tmp_path, capsys, damage, words):
    sd = zoo.create_model("levit_128s").state_dict()
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.ndim == 2)
    damage(sd, key)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "torch", "--weights", str(path), "--out", str(out)]) == 2
    err = _err(capsys)
    assert words in err and str(path) in err and not out.exists()


# D29: accuracy that exits 2 still left an empty results file
def test_accuracy_on_unreadable_images_leaves_no_file(tmp_path, capsys):
    data = tmp_path / "val" / "n01440764"
    data.mkdir(parents=True)
    (data / "a.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "acc.json"
    assert main(["accuracy", "--data", str(tmp_path / "val"), "--model", "levit_128s", "--backend", "torch",
                 "--threads", "1", "--batch-size", "1", "--cache-dir", str(tmp_path / "c"), "--out", str(out),
                 "--quiet"]) == 2
    assert "could be read" in _err(capsys) and not out.exists()
