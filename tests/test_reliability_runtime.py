"""Issue 15, the runtime side: precision OpenVINO really computes in, timings that cannot be
numbers, big files, the export cache's location and bound, -W error, unreadable checkpoints."""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import subprocess
import time
import warnings
import zipfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from torch import nn

from levit_bench import results, stats, verdict
from levit_bench.backends import Settings
from levit_bench.backends import openvino as ov_backend
from levit_bench.backends import torchscript as ts_backend
from levit_bench.backends.cache import DEFAULT_MAX_BYTES, CachedArtifact, ExportCache
from levit_bench.errors import CheckpointError, UserError
from levit_bench.models.checkpoints import read_state_dict
from levit_bench.models.weights import weights_hash
from levit_bench.spec import ModelId

REPO = Path(__file__).resolve().parent.parent


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    return model.eval()


def prepare(backend, model: nn.Module, x: torch.Tensor, settings, cache: ExportCache):
    return backend.prepare(model, ModelId("tiny", x.shape[-1], weights_hash(model)), x, settings, cache)


# ---------------------------------------------------------------------------------------------
# 4. OpenVINO fp16/bf16 on a CPU without those units


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_openvino_reduced_precision_without_units_is_skipped_with_the_reason(monkeypatch, precision):
    monkeypatch.setattr(ov_backend, "optimization_capabilities", lambda: ("FP32", "INT8", "BIN", "EXPORT_IMPORT"))
    backend = ov_backend.OpenVinoBackend()
    reason = backend.unavailable_reason(Settings(device="cpu", precision=precision))
    assert reason == (f"this CPU has no {precision} units: OpenVINO would compute in f32 "
                      "(OPTIMIZATION_CAPABILITIES: FP32, INT8, BIN, EXPORT_IMPORT)")
    assert backend.unavailable_reason(Settings(device="cpu", precision="fp32")) is None
    monkeypatch.setattr(ov_backend, "optimization_capabilities", lambda: ("FP32", "BF16", "FP16"))
    assert backend.unavailable_reason(Settings(device="cpu", precision=precision)) is None


def test_openvino_reduced_precision_matches_this_cpu():
    """On this machine, whatever it is: skipped exactly when OpenVINO reports no such units."""
    if ov_backend.OpenVinoBackend().runtime_missing():
        pytest.skip("openvino is not installed")
    reason = ov_backend.OpenVinoBackend().unavailable_reason(Settings(device="cpu", precision="bf16"))
    assert (reason is None) == ("bf16" in ov_backend.native_precisions())


def test_openvino_executed_precision_from_the_reported_hint():
    class Reported:  # what compiled.get_property("INFERENCE_PRECISION_HINT") returns: an element type
        def __init__(self, name):
            self.name = name

        def get_type_name(self):
            return self.name

    assert ov_backend.executed_precision(Reported("f32"), {"fp32"}) == "fp32"
    assert ov_backend.executed_precision(Reported("bf16"), {"fp32", "bf16"}) == "bf16"
    assert ov_backend.executed_precision(Reported("f16"), {"fp32", "fp16"}) == "fp16"
    assert ov_backend.executed_precision(Reported("bf16"), {"fp32"}) == "fp32"  # no units: f32 really


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_prepared_carries_the_precision_it_computes_in(export_cache, precision):
    """OpenVINO 2026.4 on an AVX2-only CPU reports f32 for a bf16 request: the entry must say fp32.
    (The tiny model's ONNX export is shared by both precisions through the session's export cache.)"""
    if ov_backend.OpenVinoBackend().runtime_missing():
        pytest.skip("openvino is not installed")
    model, x = tiny_model(), torch.randn(2, 3, 16, 16)
    prepared = prepare(ov_backend.OpenVinoBackend(), model, x, Settings(device="cpu", precision=precision, threads=1),
                       ExportCache(export_cache))
    expected = precision if precision in ov_backend.native_precisions() else "fp32"
    assert prepared.executed_precision == expected
    if expected != precision:
        assert f"asked for {precision}, OpenVINO computes in fp32" in prepared.notes


# ---------------------------------------------------------------------------------------------
# 5. NaN and non-positive timings


def committed_record() -> dict:
    """A flat (schema 6) file of a real run, with three successful entries: a fixture, not whatever
    ``results/`` holds (a run of the main command there writes schema 7, whose entries nest)."""
    data = json.loads((REPO / "tests" / "fixtures" / "results-v6-2026-12-02.json").read_text())
    assert sum(e["status"] == "ok" for e in data["results"]) >= 2
    return data


def first_ok(data: dict) -> tuple[int, dict]:
    return next((i, e) for i, e in enumerate(data["results"]) if e["status"] == "ok")


@pytest.mark.parametrize("field, value, says", [
    ("samples_s", math.nan, "samples_s[2] is nan"),
    ("samples_s", math.inf, "samples_s[2] is inf"),
    ("samples_s", -0.01, "samples_s[2] is -0.01"),
    ("samples_s", 0.0, "samples_s[2] is 0.0"),
    ("images_per_second", math.nan, "images_per_second is nan"),
    ("images_per_second", math.inf, "images_per_second is inf"),
    ("images_per_second", -5.0, "images_per_second"),
])
def test_non_finite_or_non_positive_timings_are_refused_on_load(tmp_path, field, value, says):
    data = committed_record()
    i, entry = first_ok(data)
    if field == "samples_s":
        entry["samples_s"][2] = value
    else:
        entry[field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # Python's json writes NaN and Infinity, and reads them back
    assert ("NaN" in path.read_text()) == (value != value)
    with pytest.raises(UserError) as err:
        results.load(path)
    msg = str(err.value)
    assert str(path) in msg and says in msg
    named = f"entry {i} ({entry['model']} / {entry['backend']} / batch {entry['batch_size']}"
    assert f"results/{i}" in msg or named in msg


def test_a_nan_sample_no_longer_lets_the_gate_pass(tmp_path):
    from levit_bench import gate

    data = committed_record()
    base = tmp_path / "base.json"
    base.write_text(json.dumps(data))
    _, entry = first_ok(data)
    entry["samples_s"] = [math.nan] * len(entry["samples_s"])
    new = tmp_path / "new.json"
    new.write_text(json.dumps(data))
    with pytest.raises(UserError, match="samples_s\\[0\\] is nan"):
        gate.compare_files(base, new)


def test_the_verdict_refuses_non_finite_times():
    good = [np.full(10, 0.01) * np.linspace(1, 1.1, 10)] * 3
    for bad in (np.r_[good[0], np.nan], np.r_[good[0], -0.01], np.r_[good[0], np.inf]):
        with pytest.raises(ValueError, match="finite and positive"):
            verdict.slowdown_verdict(good, [bad], threshold=0.05)
    with pytest.raises(ValueError, match="finite and positive"):
        verdict.slowdown_verdict(good, [], threshold=0.05)


def test_schema_refuses_non_positive_speeds():
    data = committed_record()
    jsonschema.validate(data, results.schema())
    _, entry = first_ok(data)
    entry["images_per_second"] = -1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, results.schema())


def test_load_still_names_schema_violations_in_entries(tmp_path):
    data = committed_record()
    i, entry = first_ok(data)
    path = tmp_path / "r.json"
    for field, value, says in (("batch_size", 0, f"results/{i}/batch_size"),
                               ("samples_s", ["0.1"], f"results/{i}/samples_s/0: '0.1' is not of type 'number'"),
                               ("samples_s", [0.1, True], f"results/{i}/samples_s/1: True is not of type 'number'"),
                               ("samples_s", [], f"results/{i}")):
        broken = copy.deepcopy(data)
        broken["results"][i][field] = value
        path.write_text(json.dumps(broken))
        with pytest.raises(UserError, match=f"^{path}.*") as err:
            results.load(path)
        assert says in str(err.value), str(err.value)
    broken = copy.deepcopy(data)
    del broken["system"]
    path.write_text(json.dumps(broken))
    with pytest.raises(UserError, match="top level: 'system' is a required property"):
        results.load(path)


# ---------------------------------------------------------------------------------------------
# 17. big files: validation and the two-sample test


def cpu_seconds(work, repeat: int = 2):
    """The least CPU time ``work()`` takes over ``repeat`` calls (the one the machine's other load
    disturbed least), and what the last call returned."""
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.process_time()
        result = work()
        best = min(best, time.process_time() - start)
    return best, result


def test_the_verdict_is_fast_and_still_decides():
    """2,500 entries of 2,000 samples took ~15 minutes with the unvectorized bootstrap (0.4-0.7 s each,
    two resamplings of 2,000 x 2,000 per comparison).  Timed against one such resampling on this
    machine, now: 21 verdicts on 20 rounds of 100 calls cost a fraction of it (one median per round
    and a t test on 20 values), on a fast machine or a slow one, loaded or not."""
    rng = np.random.default_rng(0)
    rounds = lambda: [0.01 * rng.lognormal(0, 0.01) * rng.lognormal(0, 0.05, 100) for _ in range(20)]
    base, others = rounds(), [rounds() for _ in range(20)]
    flat = np.concatenate(base)
    resample = np.random.default_rng(1).integers(0, flat.size, (2000, flat.size))
    one_old_resampling, _ = cpu_seconds(lambda: np.median(flat[resample], axis=1))
    verdicts, (same, slower) = cpu_seconds(lambda: (
        [verdict.slowdown_verdict(base, other, threshold=0.05) for other in others],
        verdict.slowdown_verdict(base, [r * 1.1 for r in base], threshold=0.05)))
    assert verdicts < 5 * one_old_resampling, (verdicts, one_old_resampling)
    assert sum(v.outcome == verdict.FAIL for v in same) <= 2
    assert slower.outcome == verdict.FAIL and slower.ratio == pytest.approx(1 / 1.1)
    lo, hi = slower.interval
    assert lo < 1 / 1.1 < hi < 0.95
    assert verdict.slowdown_verdict(base, [r * 1.1 for r in base], threshold=0.05) == slower  # deterministic


def test_loading_a_big_file_is_fast(tmp_path):
    """200 entries of 2,000 samples (a 5 MB file): 2.3 s CPU with one jsonschema call over the file,
    more than ten times what parsing its JSON costs.  Timed against that parse on this machine, now
    (measured: load costs about twice the parse), so a slow or loaded machine cannot fail it."""
    data = committed_record()
    _, proto = first_ok(data)
    rng = np.random.default_rng(0)
    data["results"] = []
    for i in range(200):
        e = copy.deepcopy(proto)
        e["batch_size"] = i + 1
        e["samples_s"] = np.round(0.01 * rng.lognormal(0, 0.05, 2000), 9).tolist()
        e["rounds"] = None  # one block: the samples are synthesised
        data["results"].append(e)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    parse, _ = cpu_seconds(lambda: json.loads(path.read_text()))
    load, record = cpu_seconds(lambda: results.load(path))
    assert load < 6 * parse, (load, parse)
    assert len(record.results) == 200 and len(record.results[-1].timing.samples_s) == 2000


# ---------------------------------------------------------------------------------------------
# 11. the cache location, checked up front


def test_cache_check_accepts_a_new_folder(tmp_path):
    cache = ExportCache(tmp_path / "a" / "b")
    cache.check()
    assert cache.root.is_dir() and [p.name for p in cache.root.iterdir()] == ["CACHEDIR.TAG"]  # only the tag


def test_cache_check_refuses_a_file(tmp_path):
    f = tmp_path / "cache"
    f.write_text("x")
    with pytest.raises(UserError, match=f"export cache {f} is a file, not a folder; choose another"):
        ExportCache(f).check()
    with pytest.raises(UserError, match=f"export cache {f / 'sub'} cannot be created: Not a directory"):
        ExportCache(f / "sub").check()


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into, root included (chmod alone does not stop root)."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    immutable = False
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
            d.chmod(0o700)
            pytest.skip("running as root and chattr +i is not available here: no read-only folder to test with")
        immutable = True
    yield d
    if immutable:
        subprocess.run(["chattr", "-i", str(d)], check=True)
    d.chmod(0o700)


def test_cache_check_refuses_a_read_only_folder(read_only_dir):
    says = f"export cache {read_only_dir} is not writable: (Permission denied|Operation not permitted)"
    with pytest.raises(UserError, match=says):
        ExportCache(read_only_dir).check()
    with pytest.raises(UserError, match="cannot be created"):
        ExportCache(read_only_dir / "sub").check()


def test_cache_check_refuses_a_malformed_size_bound(tmp_path, monkeypatch):
    monkeypatch.setenv("LEVIT_BENCH_CACHE_MAX_BYTES", "lots")
    with pytest.raises(UserError, match="LEVIT_BENCH_CACHE_MAX_BYTES='lots': expected a size in bytes"):
        ExportCache(tmp_path).check()
    for text, value in (("2K", 2048), ("1.5G", int(1.5 * 1024**3)), ("5GiB", 5 * 1024**3), ("12345", 12345)):
        monkeypatch.setenv("LEVIT_BENCH_CACHE_MAX_BYTES", text)
        assert ExportCache(tmp_path).max_bytes == value
    monkeypatch.delenv("LEVIT_BENCH_CACHE_MAX_BYTES")
    assert ExportCache(tmp_path).max_bytes == DEFAULT_MAX_BYTES == 5 * 1024**3


# ---------------------------------------------------------------------------------------------
# 15/16. discarding, listing, clearing and bounding the cache


def build(cache: ExportCache, backend: str, model: str, size: int = 1000, key: str = "k") -> Path:
    folder = cache.entry(backend, model, cache.key(model=model, key=key))
    path, reused = cache.get_or_build(folder, "model.bin", lambda tmp: tmp.write_bytes(b"x" * size),
                                      lambda: {"model": model})
    assert not reused
    return path


def age(artifact: Path, seconds: float) -> float:
    """Make the artifact look last used ``seconds`` ago; returns that moment (seconds since the epoch)."""
    t = time.time() - seconds
    os.utime(artifact.parent / "meta.json", (t, t))
    return t


def test_discard_removes_a_cached_artifact(tmp_path):
    cache = ExportCache(tmp_path / "c")
    path = build(cache, "onnx", "m1")
    other = build(cache, "onnx", "m2")
    assert cache.discard(str(path)) is True
    assert not path.parent.exists() and other.is_file()
    assert cache.lookup(path.parent, "model.bin") is None
    again, reused = cache.get_or_build(path.parent, "model.bin", lambda tmp: tmp.write_bytes(b"y"), None)
    assert not reused and again.read_bytes() == b"y"
    assert cache.discard(path.parent) is True  # the folder works too
    assert cache.discard(path) is False  # nothing left


def test_discard_leaves_anything_else_alone(tmp_path):
    cache = ExportCache(tmp_path / "c")
    build(cache, "onnx", "m1")
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"keep")
    blob = cache.runtime_dir("openvino") / "abc.blob"
    blob.write_bytes(b"compiled")
    assert cache.discard(outside) is False and outside.read_bytes() == b"keep"
    assert cache.discard(blob) is False and blob.is_file()
    assert cache.discard(cache.root) is False and cache.discard(cache.root / "onnx") is False
    assert len(cache.entries()) == 2


def runtime_dirs(cache: ExportCache) -> None:
    for name, size in (("inductor", 300), ("openvino", 200)):
        d = cache.runtime_dir(name) / "sub"
        d.mkdir(parents=True)
        (d / "blob").write_bytes(b"z" * size)


def test_entries_list_artifacts_and_runtime_caches(tmp_path):
    cache = ExportCache(tmp_path / "c")
    assert cache.entries() == []
    a = build(cache, "onnx", "levit_128s", 1000)
    b = build(cache, "torchscript", "deit_tiny", 2000)
    runtime_dirs(cache)
    aged = age(a, 100)
    items = cache.entries()
    assert all(isinstance(i, CachedArtifact) for i in items)
    by_folder = {i.folder: i for i in items}
    assert set(by_folder) == {a.parent, b.parent, cache.root / "inductor", cache.root / "openvino"}
    ia, ib = by_folder[a.parent], by_folder[b.parent]
    assert (ia.backend, ia.model, ib.backend, ib.model) == ("onnx", "levit_128s", "torchscript", "deit_tiny")
    meta = len((a.parent / "meta.json").read_bytes())
    assert ia.bytes == 1000 + meta and not ia.runtime
    assert by_folder[cache.root / "inductor"].runtime and by_folder[cache.root / "inductor"].bytes == 300
    assert items[0].folder == a.parent  # least recently used first
    assert ia.last_used == pytest.approx(aged, abs=2)  # when it was aged to, however long ago (2 s: mtime granularity)


def test_a_cache_hit_records_the_use(tmp_path):
    cache = ExportCache(tmp_path / "c")
    a = build(cache, "onnx", "m", 10)
    aged = age(a, 3600)
    before_hit = time.time()
    assert cache.lookup(a.parent, "model.bin") == a
    (item,) = cache.entries()
    assert item.last_used >= before_hit - 2 > aged  # touched when hit (2 s: timestamp granularity)


def test_clear_all_or_older_than(tmp_path):
    cache = ExportCache(tmp_path / "c")
    a = build(cache, "onnx", "m1", 1000)
    b = build(cache, "onnx", "m2", 1000)
    runtime_dirs(cache)
    age(a, 7200)
    old_blob = cache.root / "inductor" / "sub" / "blob"
    for p in (old_blob, old_blob.parent, old_blob.parent.parent):
        os.utime(p, (time.time() - 7200,) * 2)
    a_bytes = sum(f.stat().st_size for f in a.parent.iterdir())
    assert cache.clear(older_than_s=3600) == (2, a_bytes + 300)
    assert not a.parent.exists() and not (cache.root / "inductor").exists() and b.is_file()
    count, freed = cache.clear()
    assert count == 2 and freed >= 1200 and cache.entries() == []
    assert not (cache.root / "openvino").exists()


def test_the_cache_is_pruned_after_a_build_least_recently_used_first(tmp_path):
    root = tmp_path / "c"
    first = ExportCache(root)
    old = [build(first, "onnx", f"m{i}", 1000) for i in range(3)]
    for i, path in enumerate(old):
        age(path, 1000 - i)  # m0 the least recently used
    cache = ExportCache(root, max_bytes=3500)  # three artifacts with their meta.json fit, four do not
    new = build(cache, "torchscript", "fresh", 1000)
    assert new.is_file()
    assert [p.parent.exists() for p in old] == [False, True, True]
    assert sum(i.bytes for i in cache.entries()) <= 3500


def test_the_artifact_just_built_is_never_pruned(tmp_path):
    root = tmp_path / "c"
    old = build(ExportCache(root), "onnx", "old", 1000)
    age(old, 1000)
    cache = ExportCache(root, max_bytes=10)
    new = build(cache, "onnx", "big", 5000)
    assert new.is_file() and not old.parent.exists()
    # and nothing used during this run (this cache object's lifetime) is removed either
    again = build(cache, "onnx", "another", 5000)
    assert again.is_file() and new.is_file()


def test_the_bound_comes_from_the_environment(tmp_path, monkeypatch):
    root = tmp_path / "c"
    old = build(ExportCache(root), "onnx", "old", 4000)
    age(old, 1000)
    monkeypatch.setenv("LEVIT_BENCH_CACHE_MAX_BYTES", "6K")
    build(ExportCache(root), "onnx", "new", 1000)
    assert old.is_file()  # 5.2 KB in all with the meta.json files: under 6 KiB
    build(ExportCache(root), "onnx", "newer", 1000)
    assert not old.parent.exists()


# ---------------------------------------------------------------------------------------------
# 13. PYTHONWARNINGS=error and the torchscript deprecation warning


def test_torchscript_works_when_warnings_are_errors(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ts_backend, "_warned", False)
    model, x = tiny_model(), torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger=ts_backend.__name__):
        warnings.simplefilter("error")
        prepared = prepare(ts_backend.TorchScriptBackend(), model, x, Settings(device="cpu", threads=1),
                           ExportCache(tmp_path))
        out = prepared.runner(x)
    assert "deprecated upstream" in prepared.notes
    assert "TorchScript is deprecated upstream" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)


def test_torchscript_still_warns_once_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(ts_backend, "_warned", False)
    model, x = tiny_model(), torch.randn(2, 3, 16, 16)
    with pytest.warns(FutureWarning, match="TorchScript is deprecated upstream"):
        prepare(ts_backend.TorchScriptBackend(), model, x, Settings(device="cpu", threads=1), ExportCache(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prepare(ts_backend.TorchScriptBackend(), model, x, Settings(device="cpu", threads=1),
                           ExportCache(tmp_path))
    assert prepared.reused and "deprecated upstream" in prepared.notes


# ---------------------------------------------------------------------------------------------
# 14. unreadable checkpoints say what the file is and what was expected


def _truncated(p: Path) -> None:
    torch.save({"w": torch.randn(8, 8)}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _zip(p: Path) -> None:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")


def _bad_safetensors(p: Path) -> None:
    p.write_bytes((101).to_bytes(8, "little") + b'{"w": {"dtype"')


def _truncated_safetensors(p: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.randn(64, 64)}, str(p))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 100])


@pytest.mark.parametrize("name, make, says", [
    ("w.pth", _truncated, "not a PyTorch checkpoint (truncated or corrupt zip"),
    ("w.pth", lambda p: p.write_text("<html>404 Not Found</html>\n"),
     "not a PyTorch checkpoint (a text file starting '<html>404"),
    ("w.pth", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    ("w.pth", _zip, "not a PyTorch checkpoint (a zip archive without data.pkl, holding readme.txt)"),
    ("w.safetensors", _bad_safetensors, "not a valid safetensors file (its header length field says 101 bytes"),
    ("w.safetensors", _truncated_safetensors, "not a valid safetensors file (truncated: its tensors need"),
    ("w.pth", lambda p: torch.save([torch.randn(2)], p), "holds a list, not a state dict"),
    ("w.pth", lambda p: torch.save({"w": torch.randn(2), "epoch": 3}, p), "entry 'epoch' is a int, not a tensor"),
    ("w.pth", lambda p: p.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"),
     "a Git LFS pointer"),
    ("w.bin", lambda p: p.write_bytes(bytes(range(7, 200))), "unknown binary format"),
])
def test_unreadable_checkpoints_say_what_the_file_is_and_what_was_expected(tmp_path, name, make, says):
    path = tmp_path / name
    make(path)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    msg = str(err.value)
    assert isinstance(err.value, UserError)
    assert str(path) in msg and says in msg, msg
    assert msg.endswith("expected a state dict saved with torch.save or a .safetensors file"), msg
    assert "\n" not in msg


def test_readable_checkpoints_still_load(tmp_path):
    from safetensors.torch import save_file

    sd = {"w": torch.randn(3, 3), "b": torch.randn(3)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "a.pth")
    save_file(sd, str(tmp_path / "b.safetensors"))
    save_file(sd, str(tmp_path / "c.pth"))  # safetensors under another name: recognised by content
    for name in ("a.pth", "b.safetensors", "c.pth"):
        got = read_state_dict(tmp_path / name)
        assert set(got) == {"w", "b"} and torch.equal(got["w"], sd["w"])
