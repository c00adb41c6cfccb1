"""The shape of the package: one vocabulary, no import cycles, process state restored, one "× torch"."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from levit_bench import gate, render, report
from levit_bench.cli import main
from levit_bench.present import Baselines
from levit_bench.results import load
from levit_bench.spec import RuntimeOptions, Status

from .test_gate import make_record, ok_entry

FIXTURE = Path(__file__).parent / "fixtures" / "results-v1-2026-11-27.json"
PACKAGE = Path(__file__).resolve().parent.parent / "levit_bench"


@pytest.mark.parametrize("module", ["levit_bench.gate", "levit_bench.report", "levit_bench.bench",
                                    "levit_bench.render", "levit_bench.results"])
def test_logic_modules_never_import_the_cli(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('levit_bench.cli')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{module} imports {out.strip()}"


def test_no_importlib_indirection_and_no_module_over_400_lines():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "importlib.import_module" not in text, path
        if "models" not in path.relative_to(PACKAGE).parts:
            assert len(text.splitlines()) <= 400, f"{path} has {len(text.splitlines())} lines"


def test_runtime_options_are_declared_once_and_reach_the_cli():
    """Every declared option is a CLI flag with its default, and a variant label."""
    from levit_bench.cli.run import run_parser

    given = vars(run_parser().parse_args([]))
    resolved = RuntimeOptions.for_device("cpu", {name: given[name] for name, _d, _i in RuntimeOptions.declared()})
    assert resolved == RuntimeOptions()  # no flag given: the declared defaults (on the CPU)
    for name, default, info in RuntimeOptions.declared():
        assert given[name] is None, name  # "not given" is told apart from a default asked for
        some_backend = next(iter(info.backends))
        value = "some/folder" if info.metavar else True if info.choices is None else info.choices[-1]
        precision = info.precisions[-1] if info.precisions else "fp16"
        assert RuntimeOptions(**{name: value}).labels(some_backend, precision), name


def test_main_leaves_process_state_as_it_found_it(tmp_path, monkeypatch):
    torch.set_num_threads(2)
    before_threads = torch.get_num_threads()
    hook = warnings.showwarning
    dynamo_before = getattr(torch._dynamo.config, "fail_on_recompile_limit_hit", None)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # (importing torch._dynamo sets it)
    env_before = dict(os.environ)
    code = main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--threads", "1",
                 "--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--out", str(tmp_path / "r.json"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert torch.get_num_threads() == before_threads
    assert warnings.showwarning is hook
    assert dict(os.environ) == env_before
    assert getattr(torch._dynamo.config, "fail_on_recompile_limit_hit", None) == dynamo_before
    assert load(tmp_path / "r.json").results[0].threads == 1  # it did run with one thread


def _terminal_speedups(entries) -> dict[tuple[str, str], str]:
    from rich.console import Console

    con = Console(width=250, record=True)
    con.print(render.results_table(entries))
    rows = {}
    for line in con.export_text().splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        ratios = [c for c in cells[3:] if c.endswith("×")]  # the "× torch" column
        if len(cells) >= 4 and ratios:
            rows[(cells[0], cells[1])] = ratios[-1]
    return rows


def test_terminal_table_and_report_show_the_same_speedup():
    rng = np.random.default_rng(3)
    entries = [ok_entry(m, b, bs, bs * t * rng.lognormal(0, 0.02, 20))
               for m, b, t in [("levit_128s", "torch", 0.004), ("levit_128s", "onnxruntime", 0.0025),
                               ("levit_128s", "openvino", 0.002)]
               for bs in (1, 16)]
    terminal = _terminal_speedups(entries)
    md = report.build_report([make_record(entries)], plot_name=None).markdown
    baselines = Baselines(entries)
    for backend in ("onnxruntime", "openvino"):
        e16 = next(e for e in entries if e.backend == backend and e.batch_size == 16)
        shown = f"{baselines.speedup(e16):.2f}×"
        assert terminal[("levit_128s", backend)] == shown  # the row shows the largest batch
        assert f"({shown})" in md
    assert terminal[("levit_128s", "torch")] == "1.00×"


def test_a_results_file_of_the_previous_layout_still_loads_reports_and_compares(tmp_path):
    record = load(FIXTURE)
    assert record.results and all(e.status in Status for e in record.results)
    md = report.build_report([record], plot_name=None).markdown
    assert "levit_128s" in md and "channels last" in md
    result = gate.compare_files(FIXTURE, FIXTURE)
    assert result.rows and not result.failed(5.0)
    assert main(["compare", str(FIXTURE), str(FIXTURE), "--fail-above", "5"]) == 0
    assert main(["report", str(FIXTURE), "-o", str(tmp_path / "R.md")]) == 0
