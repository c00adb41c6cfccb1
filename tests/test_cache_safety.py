"""Issue 25 D1: the export cache deletes only what it wrote, and only in a folder that proves it is
a levit-bench cache (the CACHEDIR.TAG marker, artifact folders whose meta.json describes a file
beside it, runtime folders carrying the marker written when they were handed to the runtime)."""
from __future__ import annotations

import json
from pathlib import Path

from levit_bench.backends.cache import ExportCache
from levit_bench.cli import main

MARKER = "CACHEDIR.TAG"  # the Cache Directory Tagging Specification's file name


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _home_like(root: Path) -> None:
    """A home folder as a mistyped ``--cache-dir ~`` would find it: second-level folders, a folder
    named like a runtime cache, one named like an artifact folder with a meta.json of its own."""
    files = {
        ".bashrc": b"export PATH\n",
        "proj/docs/img/a.png": b"\x89PNG...",
        "proj/inductor/n.txt": b"notes\n",
        "inductor/mine.txt": b"my inductor notes\n",
        "openvino/models/resnet.xml": b"<net/>",
        "onnx/work/meta.json": json.dumps({"size": 4, "sha256": "0" * 64}).encode(),
        "onnx/work/thesis.tex": b"\\documentclass{article}",
        "peak/keep.txt": b"mine",
        "Documents/letter.odt": b"dear ...",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_clear_on_a_folder_that_is_not_a_cache_deletes_nothing(tmp_path, capsys):
    # the reproduction: "removed 2 cached artifacts", both files gone
    proj = tmp_path / "x" / "proj"
    (proj / "docs" / "img").mkdir(parents=True)
    (proj / "inductor").mkdir()
    (proj / "docs" / "img" / "a.png").write_text("a")
    (proj / "inductor" / "n.txt").write_text("n")
    before = _tree(proj)
    assert main(["cache", "clear", "--cache-dir", str(proj)]) == 2
    err = capsys.readouterr().err
    assert "not a levit-bench cache" in err and "Traceback" not in err
    assert _tree(proj) == before
    assert main(["cache", "list", "--cache-dir", str(proj)]) == 2
    assert _tree(proj) == before


def test_a_home_like_folder_given_as_the_cache_keeps_every_file(tmp_path, capsys):
    home = tmp_path / "home"
    _home_like(home)
    before = _tree(home)
    cache = ExportCache(home)
    assert cache.entries() == [] and cache.clear() == (0, 0) and cache.prune(max_bytes=1) == (0, 0)
    assert main(["cache", "clear", "--cache-dir", str(home)]) == 2
    # a run pointed at it refuses it too, before writing anything (no tag, no folders of ours)
    assert main(["--model", "levit_128s", "--backend", "torch", "--cache-dir", str(home),
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "not a levit-bench cache" in capsys.readouterr().err
    assert _tree(home) == before and not (home / MARKER).exists()


def test_a_real_cache_clears_only_what_it_wrote(tmp_path, capsys):
    cache = ExportCache(tmp_path / "c")
    cache.check()
    assert (cache.root / MARKER).read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    folder = cache.entry("onnx", "levit_128s", cache.key(model="levit_128s"))
    cache.get_or_build(folder, "model.onnx", lambda tmp: tmp.write_bytes(b"x" * 100), lambda: {"model": "levit_128s"})
    (cache.runtime_dir("inductor") / "fx").mkdir()
    (cache.root / "inductor" / "fx" / "graph").write_bytes(b"g" * 10)
    # things a user (or another tool) put inside: never ours, never removed
    strangers = {
        "onnx/hand-made/notes.txt": b"mine",
        "onnx/fake-meta/meta.json": json.dumps({"size": 999, "sha256": "f" * 64}).encode(),
        "onnx/fake-meta/other.bin": b"1234",
        "openvino/blob": b"not handed out by levit-bench",
        "photos/cat.jpg": b"\xff\xd8",
    }
    for name, data in strangers.items():
        (cache.root / name).parent.mkdir(parents=True, exist_ok=True)
        (cache.root / name).write_bytes(data)
    listed = {(a.backend, a.folder.name) for a in cache.entries()}
    assert listed == {("onnx", folder.name), ("inductor", "inductor")}
    assert main(["cache", "clear", "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert "removed 2 cached artifacts" in out and "left alone" in out
    assert not folder.exists() and not (cache.root / "inductor").exists()
    for name, data in strangers.items():
        assert (cache.root / name).read_bytes() == data


def test_an_earlier_versions_cache_is_adopted_and_its_artifacts_recognised(tmp_path):
    # a cache written before the marker existed: meta.json without "file", no CACHEDIR.TAG
    root = tmp_path / "old"
    art = root / "onnx" / "levit_128s-abc"
    art.mkdir(parents=True)
    (art / "model.onnx").write_bytes(b"y" * 7)
    (art / "meta.json").write_text(json.dumps({"size": 7, "sha256": "a" * 64, "model": "levit_128s"}))
    cache = ExportCache(root)
    assert cache.entries() == []  # not yet proven
    cache.check()  # a run adopts it: only cache-shaped names inside
    assert (root / MARKER).is_file()
    assert [a.model for a in cache.entries()] == ["levit_128s"]
