"""The shape of the package: layers (docs/architecture.md) no import runs back up, one vocabulary,
commands that never import each other, process state restored, one "× torch"."""
from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from levit_bench import gate, report
from levit_bench.cli import main, render
from levit_bench.present import Baselines
from levit_bench.results import load
from levit_bench.spec import RuntimeOptions, Status

from .test_gate import make_record, ok_entry

FIXTURE = Path(__file__).parent / "fixtures" / "results-v1-2026-11-27.json"
PACKAGE = Path(__file__).resolve().parent.parent / "levit_bench"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
#: modules of cli/ that are not commands: the dispatcher, ``python -m``, and what commands share
CLI_SHARED = {"cli", "cli.__main__", "cli.args", "cli.ci_outputs", "cli.front", "cli.guard", "cli.planfile", "cli.render"}
#: the flags that select what is measured: declared once, in the shared argument group
SELECTION_FLAGS = ("--model", "--backend", "--batch-size", "--precision", "--device", "--threads", "--weights",
                   "--img-size", "--cache-dir")


LOGIC_MODULES = ["levit_bench.gate", "levit_bench.report", "levit_bench.bench", "levit_bench.present",
                 "levit_bench.results"]


def _cli_modules_after_importing(modules: list[str]) -> dict[str, list[str] | None]:
    """In one fresh interpreter, import ``modules`` one after the other; for each, the
    ``levit_bench.cli`` modules loaded once it is imported, or None where some were loaded already
    (by an earlier module: then this one cannot be judged in that interpreter)."""
    code = ("import json, sys\n"
            "seen = {}\n"
            f"for module in {modules!r}:\n"
            "    before = [m for m in sys.modules if m.startswith('levit_bench.cli')]\n"
            "    __import__(module)\n"
            "    after = sorted(m for m in sys.modules if m.startswith('levit_bench.cli'))\n"
            "    seen[module] = None if before else after\n"
            "print(json.dumps(seen))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def cli_modules_imported_by() -> dict[str, list[str]]:
    """For each logic module, the CLI modules importing it loads.  All in one interpreter (one
    start-up, not five) while none loads the CLI; a module imported after one that did gets an
    interpreter of its own, so each verdict is about that module alone."""
    seen = _cli_modules_after_importing(LOGIC_MODULES)
    for module, found in seen.items():
        if found is None:
            seen[module] = _cli_modules_after_importing([module])[module]
    return seen


@pytest.mark.slow  # a fresh interpreter importing torch and the package: seconds
@pytest.mark.parametrize("module", LOGIC_MODULES)
def test_logic_modules_never_import_the_cli(module, cli_modules_imported_by):
    assert cli_modules_imported_by[module] == [], f"{module} imports {cli_modules_imported_by[module]}"


# ---------------------------------------------------------------------------------------------
# layers: every import of every module, lazy ones included, against docs/architecture.md


def _module_name(path: Path) -> str:
    """``backends/quantize.py`` -> ``backends.quantize``; a package's ``__init__.py`` is the package
    (the root's is ``levit_bench``)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "levit_bench"


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(dotted: str) -> str | None:
    """``levit_bench.x.y`` -> the module name ``x.y`` (None outside the package)."""
    if dotted == "levit_bench":
        return "levit_bench"
    if not dotted.startswith("levit_bench."):
        return None
    return dotted[len("levit_bench."):]


def imports_of(name: str) -> set[str]:
    """Every module of the package that ``name`` imports, wherever the import statement is
    (module level, inside functions, under ``TYPE_CHECKING``), relative or absolute.  ``from X
    import Y`` counts as importing X.Y when Y is a module, else X."""
    tree = ast.parse(MODULES[name].read_text())
    here = ["levit_bench", *([] if name == "levit_bench" else name.split("."))]
    package = here if _is_package(name) else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(m for a in node.names if (m := _resolve(a.name)) is not None)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            dotted = ".".join(base + ([node.module] if node.module else []))
            target = _resolve(dotted)
            if target is None:
                continue
            for alias in node.names:
                sub = target + "." + alias.name if target != "levit_bench" else alias.name
                found.add(sub if sub in MODULES else target)
    found.discard(name)
    return found


def declared_layers() -> list[tuple[int, str, bool, list[str]]]:
    """(number, name, may import within, module patterns) from the ``layers`` block of docs/architecture.md."""
    block = re.search(r"```layers\n(.*?)```", ARCHITECTURE.read_text(), re.S)
    assert block, "docs/architecture.md has no ```layers block"
    layers = []
    for line in block.group(1).splitlines():
        m = re.fullmatch(r"layer (\d+) ([^:(]+?)( \(within\))?: (.+)", line.strip())
        assert m, f"unreadable layer line: {line!r}"
        layers.append((int(m.group(1)), m.group(2), bool(m.group(3)), m.group(4).split()))
    assert [n for n, *_ in layers] == list(range(len(layers))), "layers are numbered 0, 1, 2, ... lowest first"
    return layers


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return module == pattern[:-2] or fnmatch.fnmatchcase(module, pattern)
    return module == pattern


def layer_of() -> dict[str, tuple[int, bool]]:
    layers = declared_layers()
    out: dict[str, tuple[int, bool]] = {}
    for module in MODULES:
        homes = [(n, within) for n, _name, within, patterns in layers if any(_matches(module, p) for p in patterns)]
        assert len(homes) == 1, f"{module} is in {len(homes)} layers of docs/architecture.md (give it one)"
        out[module] = homes[0]
    for _n, name, _within, patterns in layers:
        for p in patterns:
            assert any(_matches(m, p) for m in MODULES), f"layer {name!r} names {p!r}, which is no module"
    return out


def test_the_import_reader_sees_lazy_relative_and_type_checking_imports():
    assert {"backends.quantize", "backends.cache"} <= imports_of("backends.onnxruntime")  # top-level, relative
    assert "backends.quantize" in imports_of("cli.front")  # inside a function, two dots
    assert "levit_bench" in imports_of("results")  # from . import __version__: the package itself
    assert "zoo" in imports_of("data")  # a lazy one
    assert "cli" in imports_of("cli.__main__")  # from . import main: a name of the package


def test_no_module_imports_a_module_of_a_higher_layer():
    layers = layer_of()
    wrong = []
    for module, (mine, within) in layers.items():
        for target in sorted(imports_of(module)):
            theirs = layers[target][0]
            if theirs > mine or (theirs == mine and not within):
                wrong.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_command_module_imports_another():
    commands = {m for m in MODULES if m.startswith("cli.") and m not in CLI_SHARED}
    wrong = [f"{m} imports {t}" for m in sorted(commands) for t in sorted(imports_of(m) & commands)]
    assert not wrong, "\n".join(wrong)


def _declared_flags() -> list[tuple[str, str]]:
    """(flag, module) for every option string given to an ``add_argument`` call under cli/."""
    out = []
    for module, path in MODULES.items():
        if module != "cli" and not module.startswith("cli."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
                out += [(a.value, module) for a in node.args if isinstance(a, ast.Constant)
                        and isinstance(a.value, str) and a.value.startswith("--")]
    return out


def test_the_flag_reader_finds_the_selection_flags():
    assert {f for f, _m in _declared_flags()} >= set(SELECTION_FLAGS)


def test_each_selection_flag_is_declared_once_under_cli():
    flags = _declared_flags()
    repeated = {f: [m for g, m in flags if g == f] for f in SELECTION_FLAGS}
    assert all(len(ms) <= 1 for ms in repeated.values()), {f: ms for f, ms in repeated.items() if len(ms) > 1}


def test_torch_threads_are_set_only_through_runstate():
    setters = [m for m, path in MODULES.items() if "set_num_threads(" in path.read_text()]
    assert setters == ["runstate"], setters


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
                 "--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--rounds", "2",
                 "--out", str(tmp_path / "r.json"), "--cache-dir", str(tmp_path / "cache")])
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
    result = gate.compare_files(FIXTURE, FIXTURE, fail_above_pct=5.0)
    assert result.rows and result.outcome != "fail" and not result.failed()
    assert main(["compare", str(FIXTURE), str(FIXTURE), "--fail-above", "5"]) == 0
    assert main(["report", str(FIXTURE), "-o", str(tmp_path / "R.md")]) == 0
