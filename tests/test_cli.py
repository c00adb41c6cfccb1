"""The command line on a small model with short times: table, schema-valid JSON, exit codes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import jsonschema
import pytest
import torch

from levit_bench import results
from levit_bench.backends import BACKENDS
from levit_bench.backends.base import Backend
from levit_bench.backends.torch_eager import TorchBackend
from levit_bench.cli import main

from .conftest import signal_after_a_round

FAST = ["--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--rounds", "2"]
# cache_args (conftest): the session's shared export cache


@pytest.mark.slow  # an ONNX export (shared with the other tests through the export cache)
def test_run_prints_table_and_writes_valid_json(tmp_path, capsys, cache_args):
    out = tmp_path / "r.json"
    code = main(["--device", "cpu", "--model", "levit_128s", "--backend", "torch,onnxruntime",
                 "--batch-size", "1,2", "--threads", "1", "--out", str(out), *FAST, *cache_args])
    assert code == 0
    printed = capsys.readouterr().out
    assert "levit_128s" in printed and "onnxruntime" in printed and "batch 2" in printed and "× torch" in printed
    data = json.loads(out.read_text())
    jsonschema.validate(data, results.schema())
    assert data["complete"] is True and data["schema_version"] == results.SCHEMA_VERSION
    assert [(e["backend"], e["batch_size"]) for e in data["results"]] == [
        ("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)]
    for e in data["results"]:
        assert e["status"] == "ok", e["reason"]
        t, samples = e["timing"], e["timing"]["samples_s"]
        assert len(samples) >= 3 and e["threads"] == 1
        assert t["images_per_second"] == pytest.approx(e["batch_size"] / sorted(samples)[len(samples) // 2], rel=0.5)
        assert e["export"]["parity"]["cosine"] > 0.999 and set(t["latency_ms"]) == {"p50", "p90", "p99"}
    assert data["system"]["physical_cores"] and data["system"]["versions"]["torch"] == torch.__version__
    assert data["config"]["settings"]["threads"] == 1


def test_json_flag_prints_only_json_on_stdout(tmp_path, capsys, cache_args):
    code = main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--json",
                 "--out", str(tmp_path), *FAST, *cache_args])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"][0]["status"] == "ok"
    assert len(list(tmp_path.glob("*.json"))) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "levit_265"], "closest: levit_256"),
        (["--model", "nothing_*"], "matches no model"),
        (["--backend", "onnxruntme"], "closest: onnxruntime"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--batch-size", "8,x"], "--batch-size must be a positive integer"),
        (["--threads", "-2"], "--threads must be a positive integer"),
        (["--threads", "two"], "--threads must be a positive integer"),
        (["--min-time", "0"], "--min-time must be > 0"),
        (["--weights", "/nonexistent/w.pth"], "no such file"),
        (["--device", "tpu"], "invalid choice"),
        (["frobnicate"], "unknown command"),
    ],
)
def test_bad_input_exits_2_with_message(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))  # nothing measured, nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_cuda_exits_2(capsys, tmp_path):
    assert main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_unwritable_out_exits_2_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--model", "levit_128s", "--out", str(blocker / "sub" / "r.json")]) == 2
    assert "cannot write there" in capsys.readouterr().err


class _OomAtFour(Backend):
    name = "oom-at-4"

    def prepare(self, model, model_id, example, settings, cache):
        if example.shape[0] >= 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return TorchBackend().prepare(model, model_id, example, settings, cache)


def test_out_of_memory_fails_that_entry_only(tmp_path, monkeypatch, cache_args):
    monkeypatch.setitem(BACKENDS, "oom-at-4", _OomAtFour())
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "oom-at-4", "--batch-size", "2,4,1", "--out", str(out),
                 *FAST, *cache_args]) == 0
    entries = json.loads(out.read_text())["results"]
    assert [(e["batch_size"], e["status"], e["reason"]) for e in entries] == [
        (2, "ok", ""), (4, "failed", "out of memory"), (1, "ok", "")]


def test_list_and_sysinfo(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "levit_192" in listed and "65" in listed and "efficientnet_b3" in listed
    assert main(["sysinfo", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["logical_cores"] >= 1 and "torch" in info["versions"]


@pytest.mark.slow
def test_sigint_keeps_finished_entries(tmp_path, cache_args):
    """Ctrl-C during the timed rounds: exit 130, every prepared entry kept with the rounds it
    completed (complete: false), no traceback.

    The run's progress display is forced on (``FORCE_COLOR``, as on a terminal) and the signal goes
    when it shows a completed round, so every entry has timed at least one block: an event, not a
    guess at how long rounds take on this machine.  60 rounds of 0.03 s per entry (at 64 px; 1.8 s in
    all, below the 2 s at which a run measures the machine's GEMM peak, which this test does not need)
    leave 59 rounds for the signal to arrive in, so the run cannot end first either."""
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "levit_bench.cli", "--model", "levit_128s", "--backend", "torch",
           "--batch-size", "1,2,3,4", "--img-size", "64", "--rounds", "60", "--min-time", "1.8", "--warmup", "0",
           "--threads", "1",
           "--out", str(out), *cache_args]
    code, err = signal_after_a_round(cmd, signal.SIGINT)
    assert code == 130, err
    data = json.loads(out.read_text())
    assert data["complete"] is False and [e["batch_size"] for e in data["results"]] == [1, 2, 3, 4]
    for e in data["results"]:
        assert e["status"] == "ok" and 1 <= len(e["timing"]["rounds"]) < 60
        assert sum(r["calls"] for r in e["timing"]["rounds"]) == len(e["timing"]["samples_s"])
        assert any("interrupted" in n for n in e["notes"])
    assert "interrupted" in err and "Traceback" not in err
