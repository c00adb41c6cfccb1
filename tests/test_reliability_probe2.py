"""Issue 25, the second fault probe: one test (or case) per defect, named by its number.

Most run the CLI in this process (``main``), tiny: levit_128s, ONNX Runtime, batch 1, a few calls;
one export cache is shared by the module (built once), copied where a test changes it.
D1 is in ``test_cache_safety.py``; D13, D18-D21, D26, D27 and D29 belong to the front-door rewrite.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from levit_bench import results
from levit_bench.backends.cache import ExportCache
from levit_bench.cli import main
from levit_bench.errors import UserError

from .conftest import signal_after_a_round

TINY = ["--model", "levit_128s", "--backend", "onnxruntime", "--batch-size", "1", "--threads", "1",
        "--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--rounds", "2", "--quiet"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One export cache holding levit_128s's ONNX export, and one complete results file measured with it."""
    base = tmp_path_factory.mktemp("probe2")
    cache = base / "cache"
    out = base / "base.json"
    assert main([*TINY, "--cache-dir", str(cache), "--out", str(out)]) == 0
    return {"cache": cache, "base": out}


def _cache_copy(shared, tmp_path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(shared["cache"], copy, symlinks=True)
    return copy


def _variant_of(shared, tmp_path, name: str, change) -> Path:  # noqa: ANN001 - a function of the dict
    data = json.loads(shared["base"].read_text())
    change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err and err.count("levit-bench: error") == 1, err


# ---------------------------------------------------------------------------------------------
# Medium: loses or mislabels data

def test_d2_accuracy_out_keeps_fields_of_a_newer_version(shared, tmp_path, capsys):
    from PIL import Image

    (tmp_path / "data" / "0").mkdir(parents=True)
    Image.new("RGB", (64, 64), (120, 30, 200)).save(tmp_path / "data" / "0" / "a.png")

    def newer(d):
        d["future_top"] = {"kept": True}
        d["results"][0]["future_field"] = [1, 2]

    path = _variant_of(shared, tmp_path, "r.json", newer)
    code = main(["accuracy", "--data", str(tmp_path / "data"), "--model", "levit_128s", "--backend", "onnxruntime",
                 "--threads", "1", "--batch-size", "1", "--quiet", "--cache-dir", str(_cache_copy(shared, tmp_path)),
                 "--out", str(path)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(path.read_text())
    assert data["accuracy"] and data["future_top"] == {"kept": True}
    assert data["results"][0]["future_field"] == [1, 2]


@pytest.mark.slow  # a child run, signalled after its first round
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_d3_sigterm_and_sighup_keep_the_finished_rounds(cache_args, tmp_path, sig, code):
    # the session's export cache (its ONNX export); --min-time below the 2 s at which a run measures
    # the machine's GEMM peak (13 s, which this test does not need); 59 rounds left for the signal
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "levit_bench.cli", *TINY[:8], "--min-time", "1.8", "--rounds", "60",
           "--warmup", "0", *cache_args, "--out", str(out)]
    got, err = signal_after_a_round(cmd, sig)
    assert got == code, err
    assert "interrupted" in err and "Traceback" not in err
    data = json.loads(out.read_text())
    assert data["complete"] is False and len(data["results"]) == 1
    entry = data["results"][0]
    assert entry["status"] == "ok" and 1 <= len(entry["timing"]["rounds"]) < 60


def test_d3_the_signal_handlers_are_restored_after_a_command(capsys):
    def mine(*_args):  # noqa: ANN002 - a signal handler
        pass

    before = [signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGHUP)]
    try:
        assert main(["list"]) == 0
        assert all(signal.getsignal(sig) is mine for sig in (signal.SIGTERM, signal.SIGHUP))
    finally:
        for sig, old in zip((signal.SIGTERM, signal.SIGHUP), before):
            signal.signal(sig, old)


def test_d4_a_cached_export_that_does_not_load_is_rebuilt(shared, tmp_path, capsys):
    cache = _cache_copy(shared, tmp_path)
    (artifact,) = cache.glob("onnx/*/model.onnx")
    junk = os.urandom(4096)
    artifact.write_bytes(junk)  # passes the metadata check: size and sha256 updated
    meta = json.loads((artifact.parent / "meta.json").read_text())
    meta.update(size=len(junk), sha256=hashlib.sha256(junk).hexdigest())
    (artifact.parent / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "r.json"
    assert main([*TINY, "--cache-dir", str(cache), "--out", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["status"] == "ok", entry["reason"]
    assert any("could not be used" in n and "built again" in n for n in entry["notes"])
    assert artifact.read_bytes() != junk


def test_d4_with_rebuild_discards_a_reused_artifact_once(tmp_path):
    cache = ExportCache(tmp_path / "c")
    folder = cache.entry("torchscript", "m", cache.key(model="m"))
    builds = []

    def get():
        path, _ = cache.get_or_build(folder, "model.pt", lambda tmp: builds.append(tmp.write_bytes(b"PK-truncated")))
        if len(builds) < 2:
            raise RuntimeError("PytorchStreamReader failed reading zip archive")
        return path

    with pytest.raises(RuntimeError):
        cache.with_rebuild(get)  # built now, not reused: nothing to blame on the cache
    path, note = cache.with_rebuild(get)  # reused, fails, discarded, built again
    assert len(builds) == 2 and path.is_file() and "built again" in note


def test_d5_a_small_gemm_is_never_taken_for_the_machines_peak(tmp_path, capsys):
    from levit_bench import peak

    assert main(["sysinfo", "--peak", "--size", "32", "--min-time", "0.05", "--remeasure", "--threads", "1",
                 "--cache-dir", str(tmp_path), "--json"]) == 0
    capsys.readouterr()
    assert peak.cached_peak("cpu", "fp32", 1, tmp_path) is None  # a run's lookup
    assert peak.cached_peak("cpu", "fp32", 1, tmp_path, size=32).size == 32  # sysinfo --size 32's
    assert main(["sysinfo", "--peak", "--size", "1", "--min-time", "0.05", "--threads", "1",
                 "--cache-dir", str(tmp_path)]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_d6_writes_go_only_to_regular_files_or_new_paths(tmp_path):
    from levit_bench.atomic import NotWritableTarget, atomic_write_bytes

    fifo, link, mine = tmp_path / "p.png", tmp_path / "l.png", tmp_path / "mine.txt"
    os.mkfifo(fifo)
    mine.write_text("mine")
    link.symlink_to(mine)
    for target in (fifo, link):
        with pytest.raises(NotWritableTarget, match="not a regular file"):
            atomic_write_bytes(target, b"png")
    assert fifo.is_fifo() and link.is_symlink() and mine.read_text() == "mine"
    atomic_write_bytes(tmp_path / "new.png", b"png")
    atomic_write_bytes(tmp_path / "new.png", b"png2")  # a regular file: replaced
    assert (tmp_path / "new.png").read_bytes() == b"png2"


PROFILE = ["profile", "--model", "levit_128s", "--backend", "onnxruntime", "--batch-size", "1", "--threads", "1",
           "--calls", "1", "--min-time", "0.05", "--warmup", "0", "--quiet"]


@pytest.mark.parametrize("case", ["D6 fifo", "D8 folder is a file"])
def test_d6_d8_profile_png_refused_before_any_work(shared, tmp_path, capsys, case):
    if case.startswith("D6"):
        target = tmp_path / "p.png"
        os.mkfifo(target)
    else:
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "p.png"
    start = time.monotonic()
    assert main([*PROFILE, "--cache-dir", str(shared["cache"]), "--png", str(target)]) == 2
    _one_line_error(capsys.readouterr().err)
    assert time.monotonic() - start < 5  # refused up front, nothing profiled
    assert case.startswith("D8") or target.is_fifo()


# ---------------------------------------------------------------------------------------------
# Low: tracebacks

def test_d7_report_on_a_profile_with_only_the_required_keys(shared, tmp_path, capsys):
    path = _variant_of(shared, tmp_path, "p.json", lambda d: d.update(profiles=[
        {"model": "levit_128s", "backend": "torch", "status": "ok", "categories": {}}]))
    assert main(["report", str(path), "-o", str(tmp_path / "R.md")]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "profiles/0" in err and not (tmp_path / "R.md").exists()


@pytest.mark.parametrize("case", ["D9 300 characters", "D25 245 characters"])
def test_d9_d25_long_out_names(shared, tmp_path, capsys, case):
    long = tmp_path / ("r" * (295 if case.startswith("D9") else 240) + ".json")
    code = main([*TINY, "--cache-dir", str(shared["cache"]), "--out", str(long)])
    if case.startswith("D9"):
        assert code == 2
        err = capsys.readouterr().err
        _one_line_error(err)
        assert "at most 255" in err
    else:
        assert code == 0, capsys.readouterr().err
        assert json.loads(long.read_text())["complete"] is True
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("argv", [["--img-size", "16000"], ["sysinfo", "--peak", "--size", "100000"]],
                         ids=["D10 img-size", "D10 peak size"])
def test_d10_allocator_errors_are_one_line(shared, tmp_path, capsys, argv):
    if argv[0] == "sysinfo":
        argv = [*argv, "--threads", "1", "--min-time", "0.05", "--cache-dir", str(tmp_path)]
    else:
        argv = [*TINY, *argv, "--cache-dir", str(shared["cache"]), "--out", str(tmp_path / "r.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "memory" in err


def test_d11_an_ascii_stdout_gets_replacements_not_a_traceback(shared, tmp_path, capsys, monkeypatch):
    other = _variant_of(shared, tmp_path, "new.json", lambda d: None)
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    assert main(["compare", str(shared["base"]), str(other)]) == 0
    sys.stdout.flush()
    assert any(word in raw.getvalue() for word in (b"PASS", b"FAIL", b"INCONCLUSIVE"))


class _Broken(io.StringIO):
    def __init__(self, code: int):
        super().__init__()
        self.code = code

    def write(self, text):  # noqa: ANN001
        raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize("stdout, code", [(None, 2), ("/dev/full", 2), (errno.EPIPE, 141)],
                         ids=["D12 closed", "D12 /dev/full", "D17 broken pipe"])
def test_d12_d17_a_lost_stdout_never_exits_1(shared, tmp_path, capsys, monkeypatch, stdout, code):
    other = _variant_of(shared, tmp_path, "new.json", lambda d: None)
    for argv in (["sysinfo", "--json"], ["compare", str(shared["base"]), str(other)], ["list"]):
        stream = open(stdout, "w") if stdout == "/dev/full" else (_Broken(stdout) if stdout else None)  # noqa: SIM115
        monkeypatch.setattr(sys, "stdout", stream)
        assert main(argv) == code, argv
        monkeypatch.undo()
        err = capsys.readouterr().err
        assert "Traceback" not in err and (code == 141 or "standard output" in err)


def test_d17_a_real_broken_pipe(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "levit_bench.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    proc.stdout.close()  # as `| head -1` does; here before the first write (importing takes seconds), so no race
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "Exception ignored" not in err, err


# ---------------------------------------------------------------------------------------------
# Low: data and verdicts

def test_d14_compare_says_a_file_is_incomplete(shared, tmp_path, capsys):
    new = _variant_of(shared, tmp_path, "new.json", lambda d: d.update(complete=False))
    assert main(["compare", str(shared["base"]), str(new)]) == 0
    assert "incomplete (complete: false" in capsys.readouterr().err


def test_d15_unknown_runtime_options_make_another_variant(shared, tmp_path, capsys):
    new = _variant_of(shared, tmp_path, "new.json", lambda d: d["results"][0]["options"].update(future_knob=3))
    a, b = results.load(shared["base"]).results[0], results.load(new).results[0]
    assert a.key != b.key and "future_knob=3" in b.variant
    assert main(["compare", str(shared["base"]), str(new)]) == 2  # nothing in common: never matched
    assert "future_knob=3" in capsys.readouterr().err


@pytest.mark.parametrize("value", [1e-320, 1e308], ids=["D16 denormal", "D16 huge"])
def test_d16_implausible_call_times_are_refused_on_load(shared, tmp_path, capsys, value):
    def change(d):
        t = d["results"][0]["timing"]
        t["samples_s"] = [value] * len(t["samples_s"])

    new = _variant_of(shared, tmp_path, "new.json", change)
    with pytest.raises(UserError, match="call times must be finite, at least 1e-09 s"):
        results.load(new)
    assert main(["compare", str(shared["base"]), str(new), "--fail-above", "5"]) == 2


# ---------------------------------------------------------------------------------------------
# Low: over-strict or unclear

@pytest.fixture
def immutable(tmp_path):
    """Make folders unwritable even for root (chattr +i); undone after the test."""
    made: list[Path] = []
    if os.geteuid() == 0 and not shutil.which("chattr"):
        pytest.skip("running as root without chattr: no read-only folder to test with")

    def freeze(path: Path) -> None:
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                pytest.skip("chattr +i does not work on this file system")
        else:
            path.chmod(0o500)
        made.append(path)

    yield freeze
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o700)


def test_d22_a_read_only_cache_that_holds_every_export_is_used(shared, tmp_path, capsys, immutable):
    cache = _cache_copy(shared, tmp_path)
    immutable(cache)
    out = tmp_path / "r.json"
    assert main([*TINY, "--cache-dir", str(cache), "--out", str(out)]) == 0, capsys.readouterr().err
    assert "read-only" in capsys.readouterr().err
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["status"] == "ok" and entry["export"]["export_reused"] is True


def test_d23_clear_on_a_read_only_cache_says_so(shared, tmp_path, capsys, immutable):
    cache = _cache_copy(shared, tmp_path)
    for folder in cache.glob("onnx/*"):
        immutable(folder)
    immutable(cache / "onnx")
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "could not be removed" in err


def test_d24_a_clear_while_a_run_prepares_means_a_rebuild(tmp_path):
    cache = ExportCache(tmp_path / "c")
    folder = cache.entry("onnx", "m", cache.key(model="m"))
    cache.get_or_build(folder, "model.onnx", lambda tmp: tmp.write_bytes(b"graph"))
    cleared = []

    def prepare():  # a backend's prepare: the artifact from the cache, then loading it
        path, _ = cache.get_or_build(folder, "model.onnx", lambda tmp: tmp.write_bytes(b"graph"))
        if not cleared:
            cleared.append(ExportCache(cache.root).clear())  # another shell's `levit-bench cache clear`, now
        return path.read_bytes()  # [Errno 2] before the fix

    data, note = cache.with_rebuild(prepare)
    assert cleared[0][0] == 1 and data == b"graph" and "built again" in note


def test_d28_an_unreadable_calibration_image_is_skipped(tmp_path):
    from PIL import Image

    from levit_bench.backends.quantize import Calibration

    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    calibration = Calibration("levit_128s", 224, "fp", (tmp_path / "bad.png", tmp_path / "good.png"), str(tmp_path), 2)
    batches = list(calibration.batches())
    assert sum(len(b) for b in batches) == 1 and calibration.readable() == [1]
    assert "1 unreadable, skipped" in calibration.note()


def test_d30_a_run_with_stderr_closed_still_writes_its_results(shared, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    out = tmp_path / "r.json"
    argv = [*TINY, "--cache-dir", str(shared["cache"]), "--out", str(out)]
    argv[argv.index("--threads") + 1] = str(4 * (os.cpu_count() or 1))  # warns: more threads than cores
    assert main(argv) == 0
    assert json.loads(out.read_text())["complete"] is True


def test_d31_a_string_schema_version_is_named_as_one(shared, tmp_path):
    path = _variant_of(shared, tmp_path, "s.json", lambda d: d.update(schema_version="2"))
    with pytest.raises(UserError, match=r"schema version '2' \(a str\)"):
        results.load(path)


def test_d32_a_deleted_working_directory_is_one_line(tmp_path, capsys, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    code = "import os; os.chdir({!r}); os.rmdir({!r}); import levit_bench".format(str(gone), str(gone))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "working directory no longer exists" in proc.stderr, proc.stderr
    assert "oneMKL" not in proc.stderr and "Traceback" not in proc.stderr
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(["list"]) == 2
    _one_line_error(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------
# also: stale build folders, the main --help

def test_stale_build_folders_of_killed_exports_are_cleared(shared, tmp_path, capsys):
    from levit_bench.backends.cache_files import BuildFolder

    cache = _cache_copy(shared, tmp_path)
    (folder,) = cache.glob("onnx/*")
    killed = folder / ".build-killed"
    (killed / "model.onnx").parent.mkdir()
    (killed / "model.onnx").write_bytes(b"half an export")
    (killed / ".lock").write_bytes(b"")  # its lock: free, as the kernel frees it when a builder dies
    orphan = cache / "onnx" / "levit_128s-0123456789abcdef0123" / ".build-old"
    orphan.mkdir(parents=True)
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))  # an older version's, unlocked, hours old
    running = BuildFolder(folder)  # a build running now: kept
    try:
        assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
        assert "2 folder(s) left by killed exports" in capsys.readouterr().out
        assert not killed.exists() and not orphan.parent.exists() and running.path.is_dir()
    finally:
        running.remove()


def test_main_help_names_every_command(capsys):
    from levit_bench.cli import COMMANDS

    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in COMMANDS:
        assert name in text
