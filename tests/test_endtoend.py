"""Issue 24: the JPEG path — the generated set, bad files, decoder checks, per-stage times that add
up (fake clock), the pipeline's records, and end-to-end top-1 equal to ``accuracy``'s."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from levit_bench import data, jpeg, results
from levit_bench.cli import main
from levit_bench.e2e_record import ADDITIVITY_TOLERANCE, STAGES, adds_up, pipeline_record, serial_record
from levit_bench.endtoend import EndToEnd, Pipeline, Serial, open_input
from levit_bench.errors import UserError
from levit_bench.present import end_to_end_tables

FAST = ["--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--rounds", "2"]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """Eight generated images (the generator's own code path, a small n)."""
    return jpeg.generated_set(tmp_path_factory.mktemp("jpeg"), 8, seed=3)


def _jpeg_bytes(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", size, colour).save(b, "JPEG", quality=90)
    return b.getvalue()


# ---- the generated set ------------------------------------------------------------------------

def test_generated_set_is_labelled_photo_like_and_made_once(small_set):
    manifest = json.loads((small_set.parent / f"{small_set.name}.json").read_text())
    assert len(manifest["files"]) == 8 and manifest["distribution"] == jpeg.GENERATED_DISTRIBUTION
    listed = [tuple(s[0]) for s in jpeg.GENERATED_DISTRIBUTION["sizes"] if isinstance(s[0], list)]
    for f in manifest["files"]:
        w, h = f["size"]
        assert (w, h) in listed or (max(w, h) == 500 and 250 <= min(w, h) <= 500)
        assert 75 <= f["quality"] <= 95
        with Image.open(small_set / f["file"]) as img:
            assert img.format == "JPEG" and img.size == (w, h)
            a = np.asarray(img.convert("L"), dtype=float)
        # photograph-like, not noise: neighbouring pixels are strongly correlated
        assert np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1] > 0.5
    opened = jpeg.open_folder(small_set)
    by_file = {p.relative_to(small_set).as_posix(): c for p, c in zip(opened.paths, opened.labels)}
    assert by_file == {f["file"]: f["label"] for f in manifest["files"]}
    stamp = (small_set / manifest["files"][0]["file"]).stat().st_mtime_ns
    assert jpeg.generated_set(small_set.parent, 8, seed=3) == small_set  # cached: not made again
    assert (small_set / manifest["files"][0]["file"]).stat().st_mtime_ns == stamp


# ---- bad files, empty folders -----------------------------------------------------------------

def test_unreadable_and_non_jpeg_files_are_counted_and_skipped(tmp_path):
    good = _jpeg_bytes()
    (tmp_path / "a.jpg").write_bytes(good)
    (tmp_path / "b.jpeg").write_bytes(_jpeg_bytes(colour=(0, 90, 200)))
    Image.new("RGB", (8, 8)).save(tmp_path / "c.png")
    (tmp_path / "d.jpg").write_text("not an image")
    (tmp_path / "e.jpg").write_bytes(good[: len(good) // 3])  # truncated
    found = jpeg.open_folder(tmp_path)
    assert [p.name for p in found.paths] == ["a.jpg", "b.jpeg"] and found.files == 5
    assert found.labels is None  # no class folders
    reasons = dict(line.split(": ", 1) for line in found.skipped)
    assert reasons["c.png"] == "not a JPEG" and reasons["d.jpg"] == "not a JPEG"
    assert reasons["e.jpg"].startswith("unreadable")
    assert found.facts()["skipped"] == 3


def test_an_empty_folder_or_one_without_a_readable_jpeg_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="empty"):
        jpeg.open_folder(tmp_path)
    (tmp_path / "x.jpg").write_text("nope")
    with pytest.raises(UserError, match="none of its 1 files is a readable JPEG"):
        jpeg.open_folder(tmp_path)


def test_run_on_an_empty_folder_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--input",
                 f"jpeg:{tmp_path / 'empty'}", "--out", str(tmp_path / "r.json"), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "empty" in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--input", "png"], "expected tensor, jpeg or jpeg:DIR"),
    (["--input", "jpeg", "--decoder", "libjpeg9"], "unknown decoder 'libjpeg9'"),
    (["--decoder", "opencv"], "apply to --input jpeg"),
    (["--input", "jpeg", "--processes", "2"], "drop --processes"),
])
def test_bad_input_flags_exit_2(tmp_path, capsys, argv, message):
    code = main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--out", str(tmp_path / "r.json"),
                 "--cache-dir", str(tmp_path / "c"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# ---- decoders checked against Pillow ------------------------------------------------------------

def test_maintained_decoders_match_pillow_within_the_table(small_set):
    files = jpeg.open_folder(small_set)
    for name in ("pillow", "torchvision", "opencv"):
        check = jpeg.check_decoder(name, files)
        assert check["accepted"], check
        assert check["max_abs_diff"] <= jpeg.DECODER_TOLERANCE[name] and check["files"] == 8


def test_a_decoder_beyond_tolerance_is_refused_with_the_figure(small_set, monkeypatch, tmp_path):
    def brighter(raw: bytes) -> Image.Image:  # a deliberately wrong decoder: +10 levels
        a = np.asarray(jpeg.decode_pillow(raw), dtype=np.int16) + 10
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

    monkeypatch.setitem(jpeg.DECODERS, "opencv", brighter)
    files = jpeg.open_folder(small_set)
    check = jpeg.check_decoder("opencv", files)
    assert not check["accepted"] and check["max_abs_diff"] == 10
    assert check["reason"] == f"max pixel difference from Pillow 10 > tolerance {jpeg.DECODER_TOLERANCE['opencv']}"
    spec = jpeg.JpegInput(str(small_set), ("pillow", "opencv"))
    e2e = open_input(spec, tmp_path, "cpu")
    assert e2e.accepted == ["pillow"] and e2e.refusals() == [f"decoder opencv not timed: {check['reason']}"]
    with pytest.raises(UserError, match="no decoder may be timed.*max pixel difference from Pillow 10"):
        open_input(jpeg.JpegInput(str(small_set), ("opencv",)), tmp_path, "cpu")
    assert "nvjpeg" in (jpeg.unavailable("nvjpeg", "cpu") or "")


# ---- stages add up: the fake clock ----------------------------------------------------------------

class _FakeRunner:
    """Inference that takes ``seconds`` on the fake clock and returns fixed logits."""

    def __init__(self, clock, seconds):
        self.clock, self.seconds = clock, seconds

    def __call__(self, x):
        self.clock.advance(self.seconds(x.shape[0]) if callable(self.seconds) else self.seconds)
        return torch.arange(10.0).repeat(x.shape[0], 1)


def _e2e(tmp_path, n=3) -> EndToEnd:
    for i in range(n):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg_bytes(colour=(i * 40, 10, 10)))
    files = jpeg.open_folder(tmp_path)
    return EndToEnd(jpeg.JpegInput(str(tmp_path)), files, {"fake": {"accepted": True, "reason": None}}, "cpu")


def test_stage_times_add_up_to_the_serial_call_exactly_on_the_fake_clock(tmp_path, fake_clock, monkeypatch):
    monkeypatch.setitem(jpeg.DECODERS, "fake", lambda raw: (fake_clock.advance(2**-7), Image.new("RGB", (4, 4)))[1])

    def transform(img):
        fake_clock.advance(2**-6)
        return torch.zeros(3, 4, 4)

    s = Serial(_e2e(tmp_path), "fake", transform, _FakeRunner(fake_clock, 2**-5), 2)
    samples = s.block(4)
    assert samples == [2 * 2**-7 + 2 * 2**-6 + 2**-5] * 4  # the call is its stages, nothing else
    r = serial_record("fake", samples, [2, 2], s.stages, 2)
    assert r["stages_sum_ratio"] == 1.0 and r["stages_median_ratio"] == 1.0 and adds_up(r)
    assert r["stages"]["decode"]["ms_per_image"] == 1000 * 2**-7 and r["stages"]["inference"]["ms_per_image"] == 1000 * 2**-6
    assert r["stages"]["read"]["ms_per_image"] == 0.0 and set(r["stages"]) == set(STAGES) - {"copy"}
    assert r["images_per_second"] == 2 / samples[0]


def test_stage_times_add_up_on_simulated_noisy_stages_and_medians_nearly_do():
    """Stages drawn with known spread (lognormal, 10-30%): each call's stages sum to the call, so
    the stage means add up to the mean call; the medians, which need not add up, stay within 5%."""
    rng = np.random.default_rng(7)
    n = 60
    means = {"read": 0.0002, "decode": 0.004, "transform": 0.009, "batch": 0.0003, "inference": 0.03, "top5": 0.0001}
    stages = {k: list(m * rng.lognormal(0, rng.uniform(0.1, 0.3), n)) for k, m in means.items()}
    totals = list(np.sum([np.array(v) for v in stages.values()], axis=0))
    r = serial_record("pillow", totals, [10] * 6, stages, 16)
    assert r["stages_sum_ratio"] == pytest.approx(1.0, abs=1e-12) and adds_up(r)
    assert abs(r["stages_median_ratio"] - 1) <= ADDITIVITY_TOLERANCE
    truth = 1000 * means["inference"] / 16  # lognormal(0, s) times m has median m (its mean is a little above)
    assert r["stages"]["inference"]["median_ms_per_image"] == pytest.approx(truth, rel=0.15)
    lo, hi = r["stages"]["inference"]["ci95_ms"]
    assert lo <= r["stages"]["inference"]["ms_per_image"] <= hi  # the round means' interval holds their mean here
    assert r["largest_stage"] == "inference"


# ---- the overlapped pipeline --------------------------------------------------------------------

def test_pipeline_records_every_batch_and_image(tmp_path):
    calls = []

    def runner(x):
        calls.append(x.shape[0])
        return torch.arange(10.0).repeat(x.shape[0], 1)

    e2e = _e2e(tmp_path)
    p = Pipeline(e2e, "pillow", data.eval_transform("levit_128s", 64), runner, 2, decode_threads=2)
    try:
        samples = p.block(5)
    finally:
        p.close()
    assert len(samples) == 5 and all(s >= 0 for s in samples) and calls == [2] * 6  # one fill batch, untimed
    assert len(p.latencies) == 10 and len(p.waits) == 5
    r = pipeline_record("pillow", 2, 1, samples, [5], 2, p.latencies, p.waits)
    assert r["bounding_stage"] in ("decode", "inference") and r["images_per_call"] == 2
    assert r["latency_ms"]["p50"]["ms"] > 0


def test_the_bound_is_named_from_how_long_inference_waited():
    samples, lat = [0.1] * 10, [0.2] * 40
    starved = pipeline_record("pillow", 1, 1, samples, [10], 4, lat, [0.06] * 10, "transform")
    assert starved["bounding_stage"] == "decode" and starved["inference_wait_share"] == pytest.approx(0.6)
    assert "transform" in starved["bounding_words"]
    busy = pipeline_record("pillow", 2, 1, samples, [10], 4, lat, [0.001] * 10)
    assert busy["bounding_stage"] == "inference"


# ---- a whole run, and top-1 equal to accuracy's ---------------------------------------------------

def _relabelled(small_set: Path, out: Path) -> tuple[Path, list[int]]:
    """The set in class folders chosen from the eager model's own predictions (every other image
    labelled one class off), so top-1 is 50%, not a trivial 0%."""
    from levit_bench import zoo

    model = zoo.create_model("levit_128s").eval()
    transform = data.eval_transform("levit_128s")
    files = jpeg.open_folder(small_set).paths
    with torch.inference_mode():
        pred = model(torch.stack([transform(data.read_image(p)) for p in files])).argmax(1).tolist()
    labels = [c if i % 2 == 0 else (c + 1) % 1000 for i, c in enumerate(pred)]
    for i, (p, c) in enumerate(zip(files, labels)):
        (out / str(c)).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, out / str(c) / f"{i:03d}.jpg")
    return out, labels


@pytest.mark.slow  # a model built three times and two commands
def test_end_to_end_top1_equals_the_accuracy_commands_on_the_same_files(small_set, tmp_path, cache_args, capsys):
    folder, _labels = _relabelled(small_set, tmp_path / "set")
    (next(folder.iterdir()) / "notes.txt").write_text("not an image")  # counted and skipped by the JPEG path
    acc = tmp_path / "acc.json"
    assert main(["accuracy", "--data", str(folder), "--model", "levit_128s", "--backend", "torch",
                 "--batch-size", "3", "--out", str(acc), *cache_args]) == 0
    run = tmp_path / "run.json"
    assert main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "3", "--threads", "1",
                 "--input", f"jpeg:{folder}", "--decoder", "pillow,opencv", "--decode-threads", "1,2",
                 "--out", str(run), *FAST, *cache_args]) == 0
    printed = capsys.readouterr().out
    assert "JPEG to top-5" in printed and "where an image's time goes" in printed
    accuracy = results.load(acc).accuracy[0]
    entry = results.load(run).results[0]
    e2e = entry.end_to_end
    assert entry.ok and accuracy.ok and accuracy.top1 == 50.0
    assert [s["decoder"] for s in e2e["serial"]] == ["pillow", "opencv"]
    for s in e2e["serial"]:
        assert s["top1"] == accuracy.top1 and s["correct1"] == accuracy.correct1 and s["top5"] == accuracy.top5
        assert set(s["stages"]) == {"read", "decode", "transform", "batch", "inference", "top5"}
        assert s["stages_sum_ratio"] == pytest.approx(1.0, rel=1e-9)  # every call is the sum of its stages
    assert sorted((p["decoder"], p["decode_threads"]) for p in e2e["pipeline"]) == [
        ("opencv", 1), ("opencv", 2), ("pillow", 1), ("pillow", 2)]
    assert all(p["inference_threads"] == 1 for p in e2e["pipeline"])
    assert e2e["input"] == {**e2e["input"], "source": "folder", "files": 9, "images": 8, "skipped": 1, "labelled": True}
    assert e2e["input"]["skipped_files"][0].endswith("notes.txt: not a JPEG")
    assert e2e["decoders"]["opencv"]["max_abs_diff"] <= jpeg.DECODER_TOLERANCE["opencv"]
    [(speed_header, speed), (_stage_header, stages)] = end_to_end_tables([entry])
    assert len(speed) == len(stages) == 2 and speed_header[3] == "compute img/s"


# ---- the report section -----------------------------------------------------------------------

def _with_e2e(model: str, compute_s: float, pipeline_s: float, seed: int, batch: int = 16):
    """A measured entry (8 rounds of 5 calls, lognormal 3%) and its end-to-end part, with known truth."""
    from levit_bench.endtoend import end_to_end
    from levit_bench.results import Entry

    from .test_gate import ok_entry

    rng = np.random.default_rng(seed)
    calls = [5] * 8
    e = ok_entry(model, "onnxruntime", batch, compute_s * rng.lognormal(0, 0.03, 40))
    e.timing.rounds = [{"round": i, "position": 0, "start_s": float(i), "calls": 5} for i in range(8)]
    e.group = 0
    means = {"read": 0.001, "decode": 0.05, "transform": 0.15, "batch": 0.002, "inference": compute_s, "top5": 0.0005}
    stages = {k: list(m * rng.lognormal(0, 0.03, 40)) for k, m in means.items()}
    totals = list(np.sum([np.array(v) for v in stages.values()], axis=0))
    serial = serial_record("pillow", totals, calls, stages, batch)
    pipe = pipeline_record("pillow", 2, 2, list(pipeline_s * rng.lognormal(0, 0.03, 40)), calls, batch,
                           [0.5] * 640, [0.01] * 40, "transform")
    e.end_to_end = end_to_end({"source": "generated", "images": 128, "skipped": 0, "files": 128, "labelled": True},
                              {"pillow": {"accepted": True, "reason": None, "max_abs_diff": 0, "tolerance": 0, "files": 16}},
                              [serial], [pipe], [])
    return Entry.from_dict(e.to_dict())


def test_report_section_says_from_the_figures_whether_levits_lead_survives():
    from levit_bench.report.document import build_report

    from .test_gate import make_record

    # compute-only: LeViT 3x faster; JPEG path: decode bounds both, LeViT 1.25x (survives, narrowly)
    survives = make_record([_with_e2e("levit_128s", 0.1, 0.4, 1), _with_e2e("efficientnet_b0", 0.3, 0.5, 2)])
    text = build_report([survives]).markdown
    assert "## From JPEG to label" in text and "![where an image's time goes]" in text
    assert "2.98× compute-only, 1.24× from JPEG to label" in text  # the seeded samples' ratios
    assert "the lead survives the JPEG path" in text and "12% of the compute-only lead kept" in text
    # the same pair where the JPEG path takes the same time for both: the lead does not survive
    gone = make_record([_with_e2e("levit_128s", 0.1, 0.5, 3), _with_e2e("efficientnet_b0", 0.3, 0.5, 4)])
    assert "does not clearly survive" in build_report([gone]).markdown
    report = build_report([survives])
    assert any(name.startswith("jpeg-") and png[:4] == b"\x89PNG" for name, png in report.figures.items())


def test_report_without_end_to_end_entries_has_no_such_section():
    from levit_bench.report.document import build_report

    from .test_gate import base_record

    record = base_record()
    assert "From JPEG to label" not in build_report([record]).markdown
    assert not any("jpeg" in name for name in build_report([record]).figures)


def test_a_results_file_with_end_to_end_entries_validates_and_loads(tmp_path):
    import jsonschema

    from .test_gate import make_record

    path = make_record([_with_e2e("levit_128s", 0.1, 0.4, 1)]).save(tmp_path / "r.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, results.schema())
    assert data["schema_version"] == 7 and "end_to_end" in data["results"][0]
    again = results.load(path).results[0]
    assert again.end_to_end["pipeline"][0]["bounding_stage"] == "inference"
    plain = make_record([_with_e2e("levit_128s", 0.1, 0.4, 1)])
    plain.results[0].end_to_end = None
    assert "end_to_end" not in plain.to_dict()["results"][0]  # absent unless measured


def test_a_fresh_cache_holding_only_a_generated_set_is_still_a_levit_bench_cache(tmp_path):
    from levit_bench.backends import ExportCache

    cache = ExportCache(tmp_path / "cache")
    cache.check()
    jpeg.generated_set(cache.root / "jpeg", 2, seed=5)
    assert cache.foreign_items() == []
    cache.mark()
    assert cache.is_marked() and cache.unrecognised() == []
    ExportCache(tmp_path / "cache").check()  # the next run's check accepts it
