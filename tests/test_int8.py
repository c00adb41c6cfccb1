"""int8: calibration sets, the quantized-artifact cache, the parity gate's int8 row, the runs, the report."""
from __future__ import annotations

import dataclasses

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from levit_bench.backends import BACKENDS, ExportCache, quantize
from levit_bench.cli import main
from levit_bench.parity import TOLERANCES, compare_logits
from levit_bench.report.int8 import int8_rows, int8_section
from levit_bench.report.merge import group_by_machine
from levit_bench.results import Entry
from levit_bench.spec import ModelId, RuntimeOptions, Settings, Status

from .test_gate import make_record, not_ok_entry, ok_entry

MODEL = "levit_128s"


def write_images(folder: Path, seeds: range, size: int = 48) -> Path:
    """Small seeded JPEGs (smooth colour fields, as photos are, not noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        rng = np.random.default_rng(s)
        low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(low).resize((size, size), Image.BICUBIC).save(folder / f"img{s:03d}.jpg", quality=90)
    return folder


# ---- vocabulary and calibration sets (fast) ---------------------------------------------------

def test_the_nncf_preset_follows_the_family_the_model_id_carries():
    from levit_bench.backends.openvino import int8_recipe

    assert int8_recipe("levit", 64)["preset"] == int8_recipe("deit", 64)["preset"] == "mixed"
    assert int8_recipe("efficientnet", 64)["preset"] == int8_recipe("", 64)["preset"] == "performance"
    assert int8_recipe("levit", 64)["subset"] == 64


def test_int8_is_a_precision_only_onnxruntime_and_openvino_run():
    for name in ("torch", "torch-compile", "torchscript"):
        reason = BACKENDS[name].unavailable_reason(Settings(precision="int8"))
        assert reason and "int8" in reason, name
    assert "CPU only" in BACKENDS["onnxruntime"].unavailable_reason(Settings(device="cuda", precision="int8"))


def test_the_calibration_folder_labels_only_int8_entries_of_the_runtimes_it_calibrates():
    options = RuntimeOptions(calibration="/data/calib-imgs")
    assert options.labels("onnxruntime", "int8") == ["calibration calib-imgs"]
    assert options.labels("openvino", "fp32") == [] and options.labels("torch", "int8") == []
    assert RuntimeOptions().labels("onnxruntime", "int8") == []  # synthetic: the plain variant


def test_synthetic_calibration_is_seeded_and_keyed_by_its_parameters():
    a, b = (quantize.calibration_for(ModelId(MODEL, 32, "w"), None) for _ in range(2))
    assert a.synthetic and a.count == quantize.SYNTHETIC_IMAGES and "accuracy unknown" in a.note()
    first = next(a.batches())
    assert first.shape == (quantize.CALIBRATION_BATCH, 3, 32, 32) and first.dtype == np.float32
    assert np.array_equal(first, next(b.batches()))
    assert np.array_equal(first[3:4], a.image(3))  # an image is the same whichever way it is asked for
    assert abs(float(first.std()) - 1.0) < 0.05
    assert a.fingerprint != quantize.calibration_for(ModelId(MODEL, 64, "w"), None).fingerprint


def test_folder_calibration_reads_each_image_with_the_models_eval_transform(tmp_path):
    folder = write_images(tmp_path / "imgs", range(3))
    cal = quantize.calibration_for(ModelId(MODEL, 224, "w"), str(folder))
    assert not cal.synthetic and cal.count == 3 and "3 images" in cal.note() and "accuracy" not in cal.note()
    x = np.concatenate(list(cal.batches(2)))
    assert x.shape == (3, 3, 224, 224)
    (folder / "img001.jpg").write_bytes((folder / "img000.jpg").read_bytes())
    assert quantize.calibration_for(ModelId(MODEL, 224, "w"), str(folder)).fingerprint != cal.fingerprint


@pytest.mark.parametrize("argv, words", [
    (["--precision", "fp32", "--calibration", "{imgs}"], "--precision int8"),
    (["--precision", "int8", "--calibration", "{missing}"], "does not exist"),
    (["--precision", "int8", "--calibration", "{empty}"], "no images"),
])
def test_bad_calibration_flags_are_one_line_errors_before_anything_runs(tmp_path, capsys, argv, words):
    paths = {"imgs": write_images(tmp_path / "imgs", range(1)), "missing": tmp_path / "nope",
             "empty": tmp_path / "empty"}
    paths["empty"].mkdir()
    argv = [a.format(**paths) for a in argv]
    out = tmp_path / "r.json"
    assert main(["--model", MODEL, "--backend", "onnxruntime", "--batch-size", "1", "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and not out.exists()


def test_the_quantized_artifact_is_keyed_by_its_calibration_data(tmp_path):
    """Reused for the same export and calibration; built again when the calibration changes."""
    cache = ExportCache(tmp_path / "cache")
    source = tmp_path / "model.onnx"
    source.write_bytes(b"fp32 export")
    builds = []

    def build(tmp: Path) -> dict:
        builds.append(tmp)
        tmp.write_bytes(b"int8 artifact %d" % len(builds))
        return {"integer_kernels": 7}

    mid = ModelId(MODEL, 224, "w")
    synthetic = quantize.calibration_for(mid, None)
    folder = quantize.calibration_for(mid, str(write_images(tmp_path / "imgs", range(2))))
    args = (cache, "onnxruntime", mid, source)
    first = quantize.cached_quantization(*args, synthetic, {"bits": 7}, {"v": "1"}, "model.onnx", build)
    again = quantize.cached_quantization(*args, synthetic, {"bits": 7}, {"v": "1"}, "model.onnx", build)
    other = quantize.cached_quantization(*args, folder, {"bits": 7}, {"v": "1"}, "model.onnx", build)
    recipe = quantize.cached_quantization(*args, synthetic, {"bits": 8}, {"v": "1"}, "model.onnx", build)
    assert (first.reused, again.reused, other.reused, recipe.reused) == (False, True, False, False)
    assert again.path == first.path and again.facts["integer_kernels"] == 7 and again.seconds == 0.0
    assert len({first.path, other.path, recipe.path}) == 3 and len(builds) == 3
    meta = json.loads((first.path.parent / "meta.json").read_text())
    assert "synthetic" in meta["calibration"] and meta["recipe"] == {"bits": 7}


def test_seven_bit_weights_exactly_on_x86_without_vnni(monkeypatch):
    from levit_bench.backends.onnxruntime import int8_recipe

    monkeypatch.setattr(quantize.platform, "machine", lambda: "x86_64")
    for vnni, bits in ((False, 7), (True, 8)):
        monkeypatch.setattr(quantize, "has_vnni", lambda v=vnni: v)
        assert int8_recipe()["weight bits"] == bits
    monkeypatch.setattr(quantize.platform, "machine", lambda: "aarch64")
    assert int8_recipe()["weight bits"] == 8


# ---- the parity gate's int8 row ---------------------------------------------------------------

def test_int8_has_its_row_in_the_one_tolerance_table_and_the_gate_uses_it():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(16, 1000, generator=g)
    # an error of 20% of the logits' spread, independent per logit (centered cosine ~0.98, max diff ~0.2
    # of the largest logit): within int8's tolerances, beyond those of every float precision
    int8_like = ref + 0.2 * torch.randn(16, 1000, generator=g)
    assert set(TOLERANCES["int8"]) == set(TOLERANCES["fp32"])
    assert compare_logits(int8_like, ref, "int8").ok
    assert not any(compare_logits(int8_like, ref, p).ok for p in ("fp32", "fp16", "bf16"))
    broken = ref[torch.randperm(16, generator=g)]  # another image's logits: no longer the same function
    result = compare_logits(broken, ref, "int8")
    assert not result.ok and result.reason.startswith("parity failed")


# ---- report ------------------------------------------------------------------------------------

def _entry(model: str, backend: str, precision: str, seconds_per_image: float, seed: int) -> Entry:
    samples = 16 * seconds_per_image * np.random.default_rng(seed).lognormal(0, 0.02, 20)
    e = ok_entry(model, backend, 16, samples, threads=1, precision=precision)
    e.timing.rounds = [{"round": r, "position": 0, "start_s": float(r), "calls": 4} for r in range(5)]  # one timed group
    e.group = 0
    if precision == "int8":
        e.notes = ["calibration: synthetic, 64 seeded N(0,1) inputs; accuracy unknown"]
        e.export.parity = {"cosine": 0.995, "top1_agreement": 0.94, "ok": True}
    return e


def test_the_int8_section_pairs_each_int8_entry_with_its_fp32_twin():
    entries = [_entry("levit_128s", "onnxruntime", "fp32", 0.010, 1),
               _entry("levit_128s", "onnxruntime", "int8", 0.008, 2),
               _entry("efficientnet_b0", "onnxruntime", "fp32", 0.020, 3),
               _entry("efficientnet_b0", "onnxruntime", "int8", 0.010, 4)]
    failed = not_ok_entry("levit_128s", "openvino", 16, "failed", "parity failed: cosine 0.5 < 0.9", threads=1)
    failed.identity = dataclasses.replace(failed.identity, precision="int8")
    [machine] = group_by_machine([make_record(entries + [failed])])
    rows = int8_rows(machine)
    assert len(rows) == 3
    by = {(r.int8.entry.model, r.int8.entry.backend): r for r in rows}
    assert by[("levit_128s", "onnxruntime")].ratio.value == pytest.approx(1.25, rel=0.05)
    assert by[("efficientnet_b0", "onnxruntime")].ratio.value == pytest.approx(2.0, rel=0.05)
    assert by[("levit_128s", "onnxruntime")].ratio.paired  # one run, one group: round by round
    assert by[("levit_128s", "openvino")].ratio is None
    text = int8_section([machine], {("levit_128s", "onnxruntime", "fp32"): 78.6,
                                    ("levit_128s", "onnxruntime", "int8"): 78.1})
    assert "## INT8" in text and "parity failed: cosine 0.5" in text and "synthetic" in text
    assert "levit_128s vs efficientnet_b0" in text
    # LeViT over EfficientNet: 2.0x at fp32, 1.25x at int8
    row = next(line for line in text.splitlines() if line.startswith("| levit_128s vs"))
    at_fp32, at_int8 = (float(cell.split("×")[0]) for cell in row.split(" | ")[3:5])
    assert at_fp32 == pytest.approx(2.0, rel=0.03) and at_int8 == pytest.approx(1.25, rel=0.03)
    assert "-0.50" in text


def test_no_int8_entries_no_section():
    [machine] = group_by_machine([make_record([_entry("levit_128s", "onnxruntime", "fp32", 0.01, 1)])])
    assert int8_section([machine]) == ""


# ---- whole runs (slow: six quantizations of levit_128s; the fp32 ONNX export they start from is
# made once, in the shared export cache, by whichever test needs it first) -------------------------

def run_json(capsys, out: Path, cache: Path, *extra: str) -> list[dict]:
    argv = ["--model", MODEL, "--batch-size", "2", "--min-time", "0.05", "--warmup", "0.01", "--rounds", "2",
            "--threads", "2", "--precision", "int8", "--cache-dir", str(cache), "--out", str(out), "--force", "--json"]
    assert main(argv + list(extra)) == 0
    return json.loads(capsys.readouterr().out)["results"]


@pytest.mark.slow
def test_int8_runs_are_gated_timed_and_cached_by_their_calibration_data(tmp_path, capsys, export_cache):
    folder = write_images(tmp_path / "calib", range(4))
    backends = ["--backend", "onnxruntime,openvino,torch", "--calibration", str(folder)]
    first = {e["backend"]: e for e in run_json(capsys, tmp_path / "a.json", export_cache, *backends)}
    assert first["torch"]["status"] == "skipped" and "int8" in first["torch"]["reason"]
    for name in ("onnxruntime", "openvino"):
        e = first[name]
        assert e["status"] == "ok", (name, e["reason"])
        assert e["precision"] == "int8" and e["timing"]["images_per_second"] > 0 and e["export"]["export_reused"] is False
        assert e["export"]["parity"]["ok"] and e["export"]["parity"]["cosine"] >= TOLERANCES["int8"]["min_cosine"]
        assert any(n.startswith(f"calibration: {folder.resolve()}, 4 images") for n in e["notes"])
        assert any(n.startswith("int8: ") for n in e["notes"]), e["notes"]
        assert e["options"]["calibration"] == str(folder)
    again = {e["backend"]: e for e in run_json(capsys, tmp_path / "b.json", export_cache, *backends)}
    assert again["onnxruntime"]["export"]["export_reused"] and again["openvino"]["export"]["export_reused"]
    assert again["onnxruntime"]["export"]["artifact"] == first["onnxruntime"]["export"]["artifact"]
    write_images(folder, range(4, 5))  # one image more: other calibration data
    changed = {e["backend"]: e for e in run_json(capsys, tmp_path / "c.json", export_cache, *backends)}
    for name in ("onnxruntime", "openvino"):
        assert changed[name]["status"] == "ok" and changed[name]["export"]["export_reused"] is False
        assert changed[name]["export"]["artifact"] != first[name]["export"]["artifact"]
        assert any("5 images" in n for n in changed[name]["notes"])


@pytest.mark.slow
def test_an_int8_export_that_breaks_parity_fails_with_the_reason_and_is_not_timed(tmp_path, capsys, export_cache,
                                                                                monkeypatch):
    """Calibrated on inputs ten thousand times too small, every activation range is too narrow: the
    gate must stop it.  (A cache of its own, holding only the fp32 export, so the bad artifact is not
    left for other tests.)"""
    cache = tmp_path / "cache"
    if (export_cache / "onnx").is_dir():
        shutil.copytree(export_cache / "onnx", cache / "onnx")
    real = quantize.Calibration.batches
    monkeypatch.setattr(quantize.Calibration, "batches", lambda self, size=8: (b * 1e-4 for b in real(self, size)))
    folder = write_images(tmp_path / "calib", range(4))
    [e] = run_json(capsys, tmp_path / "a.json", cache, "--backend", "onnxruntime", "--calibration", str(folder))
    assert e["status"] == "failed" and e["reason"].startswith("parity failed"), e["reason"]
    assert e["timing"] is None and e["export"]["parity"]["ok"] is False
    assert Status(e["status"]) is Status.FAILED


@pytest.mark.slow
def test_fp32_and_int8_in_one_run_are_timed_in_the_same_rounds_and_paired(tmp_path, capsys, export_cache):
    """``--precision fp32,int8``: both twins in one group, so int8 over fp32 is a paired ratio (the
    machine's drift cancels) and the int8 section says so."""
    from levit_bench.present import speed_ratio
    from levit_bench.results import load

    out = tmp_path / "both.json"
    entries = run_json(capsys, out, export_cache, "--backend", "onnxruntime", "--precision", "fp32")
    assert [e["precision"] for e in entries] == ["int8", "fp32"]  # in the order asked
    record = load(out)
    int8, fp32 = record.results
    assert int8.ok and fp32.ok and int8.group == fp32.group and len(int8.timing.rounds) == len(fp32.timing.rounds) == 2
    assert speed_ratio(int8, fp32, same_run=True).paired
    assert record.config["precisions"] == ["int8", "fp32"]
    assert fp32.explain.gmacs_per_s > 0 and int8.explain.gmacs_per_s > 0 and int8.explain.efficiency is None  # no float peak for int8
    assert "(paired)" in int8_section(group_by_machine([record]))


def test_precision_lists_are_checked_like_single_values(capsys):
    assert main(["--model", MODEL, "--precision", "fp32,int4"]) == 2
    assert "unknown precision 'int4'" in capsys.readouterr().err
    assert main(["--paper", "--model", MODEL, "--precision", "fp32,int8"]) == 2
    assert "--paper fixes --precision to fp32" in capsys.readouterr().err
