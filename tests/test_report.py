"""The Markdown report from synthetic results files of two machines: tables, paper table, plot,
the headline ratio, failures listed, sources named, bad input exits 2."""
from __future__ import annotations

import dataclasses

import re
from pathlib import Path

import numpy as np
import pytest

from levit_bench import report
from levit_bench.cli import main
from levit_bench.results import SCHEMA_VERSION
from levit_bench.spec import Conditions, RuntimeOptions

from .test_gate import SYSTEM, make_record, not_ok_entry, ok_entry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALPHA = {**SYSTEM, "hostname": "alpha", "cpu": "Xeon Alpha"}
BETA = {**SYSTEM, "hostname": "beta", "cpu": "EPYC Beta", "gpu": {"name": "Test GPU", "memory_bytes": 16 * 2**30,
                                                                    "driver": "550", "cuda": "12.4"}}
#: seconds per image (paper protocol on alpha): LeViT-192's conv layout is the faster one
ALPHA_SPEEDS = {("levit_128s", "torch"): 0.008, ("levit_128s", "onnxruntime"): 0.005,
                ("levit_192", "torch"): 0.020, ("levit_192_conv", "torch"): 0.016,
                ("efficientnet_b0", "torch"): 0.030, ("efficientnet_b2", "torch"): 0.080,
                ("efficientnet_b2", "onnxruntime"): 0.064, ("deit_tiny_distilled", "torch"): 0.025,
                ("timm:resnet18", "torch"): 0.02}


def entries_at(speeds: dict, batch: int, threads: int, seed: int, device: str = "cpu", precision: str = "fp32",
               n: int = 25) -> list:
    rng = np.random.default_rng(seed)
    return [ok_entry(m, b, batch, batch * t * rng.lognormal(0, 0.03, n), threads=threads, device=device,
                     precision=precision) for (m, b), t in speeds.items()]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    alpha = make_record(
        entries_at(ALPHA_SPEEDS, 16, 1, seed=0)
        + entries_at({k: v / 3 for k, v in ALPHA_SPEEDS.items() if k[0] != "timm:resnet18"}, 64, 2, seed=1)
        + [not_ok_entry("levit_128s", "openvino", 16, "failed", "parity failed: cosine 0.12", threads=1),
           not_ok_entry("levit_128s", "torchscript", 16, "skipped", "torchscript is broken here", threads=1)],
        system=ALPHA, argv=["--device", "cpu", "--paper", "--model", "levit_*", "--out", "alpha.json"])
    alpha.created = "2025-01-01T00:00:00+00:00"
    later = make_record(entries_at({("deit_tiny_distilled", "torch"): 0.020}, 16, 1, seed=2), system=ALPHA,
                        argv=["--model", "deit_tiny_distilled", "--paper"])
    later.created, later.complete = "2025-01-02T00:00:00+00:00", False
    beta_speeds = {("levit_256", "torch"): 0.0002, ("efficientnet_b3", "torch"): 0.0009}
    beta = make_record(entries_at(beta_speeds, 256, 8, seed=3, device="cuda", precision="fp16")
                       + entries_at(beta_speeds, 64, 8, seed=4, device="cuda", precision="fp16"),
                       system=BETA, argv=["--device", "cuda", "--batch-size", "64,256"])
    paths = {"alpha": d / "alpha.json", "later": d / "alpha-deit.json", "beta": d / "beta.json"}
    for name, rec in (("alpha", alpha), ("later", later), ("beta", beta)):
        rec.save(paths[name])
    return {k: str(v) for k, v in paths.items()} | {"dir": d}


@pytest.fixture(scope="module")
def written(files):
    out = Path(files["dir"]) / "REPORT.md"  # next to the results files: they are named relative to it
    code = main(["report", files["alpha"], files["later"], files["beta"], "-o", str(out)])
    assert code == 0
    return out, out.read_text()


def test_report_has_a_section_per_machine_and_a_table_per_device(written):
    _, md = written
    assert md.count("\n## Machine ") == 2
    assert "## Machine alpha: Xeon Alpha" in md and "## Machine beta: EPYC Beta + Test GPU" in md
    for title in ("### cpu · fp32 · 1 thread\n", "### cpu · fp32 · 2 threads", "### cuda · fp16 · 8 threads"):
        assert title in md
    assert "| model | torch · batch 16 | onnxruntime · batch 16 | openvino · batch 16 | torchscript · batch 16 |" in md
    row = next(line for line in md.splitlines() if line.startswith("| levit_128s |") and "±" in line)
    # onnxruntime is 0.008/0.005 = 1.6× torch (medians of noisy samples: within a few %)
    up = float(re.search(r"\(([\d.]+)×\)", row).group(1))
    assert up == pytest.approx(1.6, rel=0.05)
    assert "| failed | skipped |" in row


def test_system_summary_and_sources_are_stated(written, files):
    _, md = written
    assert "| CPU | Xeon Alpha (x86_64) |" in md and "Test GPU, 16 GiB" in md
    assert "`alpha.json`" in md and "`beta.json`" in md  # relative to the report's folder
    body = [x for x in md.splitlines() if not x.startswith("Regenerate this report:")]  # the command as typed
    assert not any(str(files["dir"]) in x for x in body)
    assert "`levit-bench --device cpu --paper --model 'levit_*' --out alpha.json`" in md
    assert "`levit-bench --device cuda --batch-size 64,256`" in md
    assert "Regenerate this report: `levit-bench report " in md
    assert "**incomplete**" in md  # the second alpha file says complete: false


def test_paper_table_has_published_figures_and_our_best(written):
    _, md = written
    assert ("| model | device | top-1 (published) | params | FLOPs | MACs (counted) | paper img/s | paper hardware "
            "| ours at the paper's setting | GMAC/s (% of peak) there |") in md
    line = next(x for x in md.splitlines() if x.startswith("| levit_192 | cpu |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2:8] == ["80", "10.9M", "658M", "—", "65.0", "Xeon Gold 6138, 1 thread, batch 16"]  # not counted
    paper_setting_ips, backend = re.fullmatch(r"([\d.,]+) \((\w+), batch 16\)", cells[8]).groups()
    assert backend == "torch" and float(paper_setting_ips) == pytest.approx(16 / (16 * 0.020), rel=0.05)
    assert cells[9] == "—"  # entries of files without counted MACs: no efficiency
    assert cells[11] == "torch" and cells[12] == "fp32, batch 64, 2 threads"  # the fastest entry: 3× at batch 64
    assert float(cells[10].replace(",", "")) == pytest.approx(3 / 0.020, rel=0.05)
    eff = next(x for x in md.splitlines() if x.startswith("| efficientnet_b3 | cuda |"))
    assert "77.1" not in eff and "81.6*" in eff and "V100, AMP fp16, batch 512" in eff
    assert re.fullmatch(r"[\d.,]+ \(torch, batch 256\)", eff.split("|")[9].strip())  # GPU: largest batch measured
    assert "| timm:resnet18 | cpu |" not in md  # no published figures to show


def test_failed_and_skipped_entries_are_listed_with_reasons(written):
    _, md = written
    assert "### Not measured" in md
    assert "**failed**: levit_128s / openvino / cpu fp32 / batch 16 / 1 thread: parity failed: cosine 0.12" in md
    assert "**skipped**: levit_128s / torchscript" in md and "torchscript is broken here" in md


def test_an_entry_measured_again_lists_the_one_it_replaced(written, files):
    _, md = written
    assert "### Measured more than once" in md
    line = next(x for x in md.splitlines() if x.startswith("- deit_tiny_distilled / torch / cpu fp32 / batch 16"))
    assert "`alpha.json`" in line and "using `alpha-deit.json`" in line


def test_plot_is_a_nonempty_png_linked_from_the_report(written):
    from matplotlib import image

    out, md = written
    png = out.with_name("REPORT-speed-accuracy.png")
    assert "![images/s against published top-1](REPORT-speed-accuracy.png)" in md
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    pixels = image.imread(png)[..., :3]
    assert pixels.shape[0] > 200 and pixels.shape[1] > 2 * pixels.shape[0]  # two panels side by side
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.01  # something drawn, not a blank canvas
    colored = np.abs(pixels[..., 0] - pixels[..., 1]) > 0.3  # series colours, not only black axes
    assert colored.sum() > 50
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_plot_panels_use_one_setting_and_merge_layouts(files):
    machines = report.group_by_machine(report.load_results([files["alpha"], files["beta"]]))
    panels = report.speed_accuracy_panels(machines)
    assert [p.title for p in panels] == ["cpu · alpha: Xeon Alpha", "cuda · beta: EPYC Beta + Test GPU"]
    cpu = panels[0]
    assert "the paper's CPU protocol" in cpu.setting
    by_model = {p.model: p for p in cpu.points}
    assert "levit_192_conv" in by_model and "levit_192" not in by_model  # one point, the faster layout
    assert "timm:resnet18" not in by_model  # no published top-1
    assert {p.family for p in cpu.points} == {"levit", "deit", "efficientnet"}
    assert panels[1].setting == "cuda fp16, 8 threads, batch 256, torch"
    assert cpu.setting.endswith(", torch")  # one runtime per panel: the one covering most models
    assert all(p.source.entry.backend == "torch" for p in cpu.points)


def test_headline_uses_the_paper_protocol_and_the_faster_levit_layout(files):
    machines = report.group_by_machine(report.load_results([files["alpha"]]))
    found = {(report.base_model(h.levit.entry.model), h.efficientnet.entry.model): h
             for h in report.headlines(machines)}
    assert set(found) == {("levit_128s", "efficientnet_b0"), ("levit_192", "efficientnet_b2")}
    h = found[("levit_192", "efficientnet_b2")]
    assert report.is_paper_setting(h.setting) and h.device == "cpu"
    # LeViT-192 ran on torch only, so EfficientNet-B2 is taken on torch too, not its faster onnxruntime
    assert h.levit.entry.model == "levit_192_conv" and h.efficientnet.entry.backend == "torch"
    assert h.ratio == pytest.approx(0.080 / 0.016, rel=0.05)
    assert h.ratio_ci95[0] < h.ratio < h.ratio_ci95[1]
    assert h.paper_ratio == pytest.approx(65.0 / 13.2)
    md = report.headline_section(machines)
    assert "cpu fp32, 1 thread, batch 16 (the paper's CPU protocol)" in md
    assert "levit_192_conv (torch)" in md and "efficientnet_b2 (torch)" in md
    h128 = found[("levit_128s", "efficientnet_b0")]
    assert h128.levit.entry.backend == "torch"  # onnxruntime is faster for levit_128s, but B0 ran on torch only
    assert "4.92× (Xeon Gold 6138, 1 thread, batch 16)" in md
    assert "Not measured at a common setting: levit_256 vs efficientnet_b3." in md


def test_headline_without_the_paper_protocol_uses_the_largest_common_batch(files):
    machines = report.group_by_machine(report.load_results([files["beta"]]))
    (h,) = report.headlines(machines)
    assert h.device == "cuda" and h.setting == Conditions("cuda", "fp16", 256, 8)
    assert h.ratio == pytest.approx(0.0009 / 0.0002, rel=0.05)
    assert h.paper_ratio == pytest.approx(6582 / 1272) and "V100" in h.paper_hardware


def test_runtime_options_make_separate_columns_not_duplicates(tmp_path):
    """torch-compile with and without CUDA graphs at the same key are two measurements, both shown."""
    rng = np.random.default_rng(7)
    plain = ok_entry("levit_256", "torch-compile", 256, 256 * 2e-5 * rng.lognormal(0, 0.02, 10), device="cuda",
                     precision="fp16")
    graphs = ok_entry("levit_256", "torch-compile", 256, 256 * 1e-5 * rng.lognormal(0, 0.02, 10), device="cuda",
                      precision="fp16")
    plain.identity = dataclasses.replace(plain.identity, options=RuntimeOptions(cuda_graphs=False, channels_last=False, half_mode="cast"))
    graphs.identity = dataclasses.replace(graphs.identity, options=RuntimeOptions(cuda_graphs=True, channels_last=True, half_mode="autocast"))
    rec = make_record([plain, graphs], system=BETA)
    md = report.build_report([rec], plot_name=None).markdown
    assert "| model | torch-compile · batch 256 | torch-compile [autocast, channels last, CUDA graphs] · batch 256 |" in md
    assert "Measured more than once" not in md
    assert "torch-compile [autocast, channels last, CUDA graphs] | fp16, batch 256" in md  # the best, named


def test_choose_setting():
    def s(threads: int, batch: int) -> Conditions:
        return Conditions("cpu", "fp32", batch, threads)

    assert report.choose_setting({s(4, 64): 5, s(1, 16): 2}) == s(1, 16)
    assert report.choose_setting({s(4, 64): 2, s(4, 16): 5}) == s(4, 16)
    assert report.choose_setting({s(4, 64): 2, s(1, 64): 2, s(4, 16): 2}) == s(1, 64)
    assert report.choose_setting({}) is None


def test_a_folder_of_results_files_is_read(files, tmp_path):
    report_path, plot_path = report.write_report([files["dir"]], tmp_path / "r")
    assert report_path == tmp_path / "r" / "REPORT.md" and plot_path is not None and plot_path.is_file()
    assert report_path.read_text().count("\n## Machine ") == 2


def test_written_analysis_is_included_after_the_headline(files, tmp_path, capsys):
    notes = tmp_path / "analysis.md"
    notes.write_text("## Analysis\n\nThe 5x claim holds in eager PyTorch only.\n")
    out = tmp_path / "R.md"
    assert main(["report", str(files["dir"]), "-o", str(out), "--analysis", str(notes)]) == 0
    text = out.read_text()
    assert "The 5x claim holds in eager PyTorch only." in text
    assert text.index("## The paper's headline") < text.index("## Analysis") < text.index("## Speed and accuracy")
    assert main(["report", str(files["dir"]), "-o", str(out), "--analysis", str(tmp_path / "none.md")]) == 2
    assert "cannot read the analysis file" in capsys.readouterr().err


def test_nothing_plottable_means_no_plot_and_says_why(tmp_path):
    rec = make_record([ok_entry("timm:resnet18", "torch", 1, np.full(5, 0.01)),
                       not_ok_entry("levit_256", "torch", 1, "failed", "model build failed: boom")])
    path = tmp_path / "only.json"
    rec.save(path)
    report_path, plot_path = report.write_report([path], tmp_path / "R.md")
    md = report_path.read_text()
    assert plot_path is None and not (tmp_path / "R-speed-accuracy.png").exists()
    assert "No plot: no successful entry of a model with a published top-1." in md
    assert "model build failed: boom" in md and "Not measured: no pair (levit_128s + efficientnet_b0" in md


@pytest.mark.parametrize("case", ["missing", "not_json", "empty_folder", "wrong_schema"])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, case, files):
    if case == "missing":
        arg, expect = str(tmp_path / "nope.json"), "not found"
    elif case == "not_json":
        (tmp_path / "x.json").write_text("nope")
        arg, expect = str(tmp_path / "x.json"), "cannot read"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        arg, expect = str(tmp_path / "empty"), "no results files"
    else:
        text = Path(files["beta"]).read_text().replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 99')
        (tmp_path / "v99.json").write_text(text)
        arg, expect = str(tmp_path / "v99.json"), "schema version 99"
    assert main(["report", arg, "-o", str(tmp_path / "out.md")]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not (tmp_path / "out.md").exists()
