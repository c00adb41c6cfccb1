"""Every CPU backend prepares, passes parity against eager fp32, and is reused from the cache."""
from __future__ import annotations

import builtins
import functools
import shutil
from pathlib import Path

import pytest
import torch

import levit_bench as lb
from levit_bench.backends import BACKENDS, ExportCache, Settings, default_backends
from levit_bench.backends import onnx_export
from levit_bench.backends.openvino import native_precisions
from levit_bench.selection import Selection
from levit_bench.backends.base import Backend, Prepared, Runner
from levit_bench.bench import Plan, execute
from levit_bench.models.weights import weights_hash
from levit_bench.harness import TimingOptions
from levit_bench.runstate import run_state
from levit_bench.spec import ModelId
from levit_bench.parity import TOLERANCES, compare_logits, parity_input

from .conftest import randomize_norms


def model_id(name: str, fused: torch.nn.Module) -> ModelId:
    return ModelId(name, lb.model_spec(name).img_size, weights_hash(fused))

MODELS = ["levit_128s", "levit_128s_conv", "deit_tiny", "efficientnet_b0", "graft_r50s2_deits6"]
CPU_BACKENDS = ["torch", "torchscript", "onnxruntime", "openvino"]
BATCH = 2
FAST = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> ExportCache:
    return ExportCache(tmp_path_factory.mktemp("export-cache"))


@pytest.fixture(scope="module")
def models():
    """name -> (reference, fused, input, reference logits), with randomized norms; each model built
    once, when a test first asks for it (so a test of levit_128s alone builds no other)."""

    @functools.cache
    def build(name: str):
        ref = randomize_norms(lb.create_model(name))
        fused = lb.fuse(ref)
        x = parity_input(BATCH, lb.model_spec(name).img_size)
        with torch.no_grad():
            return ref, fused, x, ref(x)

    return build


def _matrix():
    """Every zoo model on every CPU backend; all but eager levit_128s export or trace a real model
    (tens of seconds each on 2 cores), so they are slow, and the fast tier has the small model below."""
    for name in MODELS:
        for backend in CPU_BACKENDS:
            slow = () if (name, backend) == ("levit_128s", "torch") else pytest.mark.slow
            yield pytest.param(name, backend, marks=slow, id=f"{name}-{backend}")


def _small_model() -> torch.nn.Module:
    """Conv, BatchNorm, activation, pooling, linear: every exporter's path, exported in a second."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.Hardswish(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    return randomize_norms(model).eval()


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory) -> ExportCache:
    """The small model's cache: ONNX Runtime and OpenVINO share its one ONNX export, as in a run."""
    return ExportCache(tmp_path_factory.mktemp("small-model-cache"))


@pytest.mark.parametrize("backend", [b if b != "openvino" else pytest.param(b, marks=pytest.mark.slow)
                                     for b in CPU_BACKENDS])  # OpenVINO's fast checks: test_reliability_runtime
def test_each_backend_prepares_a_small_model_passes_parity_and_reuses_cache(backend, small_cache, monkeypatch):
    """The matrix below on a model small enough for the fast tier: the same checks, every backend."""
    ref = _small_model()
    fused = lb.fuse(ref, img_size=32)
    x = parity_input(BATCH, 32)
    with torch.no_grad():
        want = ref(x)
    mid = ModelId("small", 32, weights_hash(fused))
    settings, cache = Settings(threads=2), small_cache
    first = BACKENDS[backend].prepare(fused, mid, x, settings, cache)
    assert compare_logits(first.runner(x), want, "fp32").ok
    first.runner.bind(x)()
    if backend == "torch":
        return
    assert first.artifact and Path(first.artifact).is_file()

    def no_export(*_a, **_k):
        raise AssertionError("exported again although the cache holds the artifact")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    monkeypatch.setattr(torch.jit, "trace", no_export)
    second = BACKENDS[backend].prepare(fused, mid, x, settings, cache)
    assert second.reused and second.export_s == 0.0 and second.artifact == first.artifact
    assert compare_logits(second.runner(x), want, "fp32").ok


@pytest.mark.parametrize("name, backend", _matrix())
def test_prepares_passes_parity_and_reuses_cache(name, backend, models, cache, monkeypatch):
    _, fused, x, want = models(name)
    settings = Settings(threads=2)
    first = BACKENDS[backend].prepare(fused, model_id(name, fused), x, settings, cache)
    result = compare_logits(first.runner(x), want, "fp32")
    assert result.ok, result.reason
    first.runner.bind(x)()  # the timed call runs
    if backend == "torch":
        return
    assert first.artifact and Path(first.artifact).is_file()

    def no_export(*_a, **_k):
        raise AssertionError("exported again although the cache holds the artifact")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    monkeypatch.setattr(torch.jit, "trace", no_export)
    second = BACKENDS[backend].prepare(fused, model_id(name, fused), x, settings, cache)
    assert second.reused and second.export_s == 0.0 and second.artifact == first.artifact
    assert compare_logits(second.runner(x), want, "fp32").ok


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_corrupt_artifact_is_rebuilt(backend, models, cache, tmp_path, monkeypatch):
    """A cache of its own holding a copy of the module cache's artifact (exported there once), which
    is then truncated: the next prepare must notice and build it again.  TorchScript traces again;
    the ONNX rebuild goes through the exporter's entry point, which writes the bytes the real export
    wrote (the exporter itself is checked by the matrix above; here, the cache)."""
    _, fused, x, want = models("levit_128s")
    settings = Settings(threads=2)
    shared = Path(BACKENDS[backend].prepare(fused, model_id("levit_128s", fused), x, settings, cache).artifact)
    own = ExportCache(tmp_path)
    copy = own.root / shared.parent.relative_to(cache.root)
    shutil.copytree(shared.parent, copy)
    first = BACKENDS[backend].prepare(fused, model_id("levit_128s", fused), x, settings, own)
    artifact = Path(first.artifact)
    assert first.reused and artifact.parent == copy
    data = artifact.read_bytes()
    artifact.write_bytes(data[: len(data) // 2])  # truncated, as by an interrupted copy
    exports = []
    if backend == "onnxruntime":
        monkeypatch.setattr(onnx_export, "_export", lambda model, example, path: (
            exports.append(model), Path(path).write_bytes(data), "the export above, again")[-1])
    again = BACKENDS[backend].prepare(fused, model_id("levit_128s", fused), x, settings, own)
    assert not again.reused
    assert exports == ([fused] if backend == "onnxruntime" else [])
    assert Path(again.artifact).read_bytes() == data or Path(again.artifact).stat().st_size > len(data) // 2
    assert compare_logits(again.runner(x), want, "fp32").ok


def test_interrupted_export_leaves_nothing_used(tmp_path, models, monkeypatch):
    _, fused, x, _ = models("levit_128s")
    cache = ExportCache(tmp_path)

    def broken(model, example, path):
        Path(path).write_bytes(b"half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "_export", broken)
    with pytest.raises(KeyboardInterrupt):
        onnx_export.export_onnx(fused, model_id("levit_128s", fused), x, cache)
    assert not list(tmp_path.rglob("model.onnx"))


def _identity_onnx(path: Path) -> None:
    """A valid ONNX file (input to logits, nothing between): what the cache stores, without an export."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "identity",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 224, 224])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.DYNAMO_OPSET)]), str(path))


def test_cache_key_changes_with_weights(models, tmp_path, monkeypatch):
    """The key is under test, not the exporter: ``_export`` writes a stand-in ONNX file."""
    _, fused, x, _ = models("levit_128s")
    exported = []
    monkeypatch.setattr(onnx_export, "_export", lambda model, example, path: (exported.append(model),
                                                                              _identity_onnx(path), "stand-in")[-1])
    cache = ExportCache(tmp_path)
    a = onnx_export.export_onnx(fused, model_id("levit_128s", fused), x, cache)[0]
    changed = lb.fuse(randomize_norms(lb.create_model("levit_128s"), seed=5))
    b = onnx_export.export_onnx(changed, model_id("levit_128s", changed), x, cache)[0]
    assert a != b
    again, reused = onnx_export.export_onnx(fused, model_id("levit_128s", fused), x, cache)[:2]
    assert again == a and reused  # the same weights: the same key
    assert exported == [fused, changed]


def test_cache_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LEVIT_BENCH_CACHE", str(tmp_path / "c"))
    assert ExportCache().root == tmp_path / "c"


@pytest.mark.slow  # a whole run of levit_128s (build, fold, parity, timing)
def test_missing_package_is_skipped_with_reason(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert BACKENDS["openvino"].unavailable_reason(Settings()) == "openvino is not installed (pip install openvino)"
    plan = Plan(Selection(("levit_128s",), ("openvino", "torch",), (1,), ("fp32",), Settings(threads=1), cache_dir=str(tmp_path)), FAST)
    entries = execute(plan)
    assert [e.status for e in entries] == ["skipped", "ok"]
    assert entries[0].reason == "openvino is not installed (pip install openvino)"


def test_cuda_backends_skip_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert BACKENDS["torch"].unavailable_reason(Settings(device="cuda")) == "no CUDA device"
    assert BACKENDS["openvino"].unavailable_reason(Settings(device="cuda")) == "openvino does not run on cuda"


class _WrongRunner(Runner):
    def bind(self, x):
        return lambda: None

    def __call__(self, x):
        return torch.randn(x.shape[0], 1000)


class _WrongBackend(Backend):
    name = "wrong"

    def prepare(self, model, model_id, example, settings, cache):
        return Prepared(_WrongRunner())


def test_parity_failure_is_not_timed(monkeypatch, tmp_path):
    monkeypatch.setitem(BACKENDS, "wrong", _WrongBackend())
    plan = Plan(Selection(("levit_128s",), ("wrong",), (2,), ("fp32",), Settings(threads=1), cache_dir=str(tmp_path)), FAST)
    (entry,) = execute(plan)
    assert entry.status == "failed" and entry.reason.startswith("parity failed")
    assert entry.timing is None and entry.export.parity["cosine"] < TOLERANCES["fp32"]["min_cosine"]


class _ExplodingBackend(Backend):
    name = "exploding"

    def prepare(self, model, model_id, example, settings, cache):
        raise RuntimeError("exporter said no\nand a long second line")


@pytest.mark.slow  # a whole run of levit_128s (build, fold, parity, timing)
def test_export_failure_gives_first_line(monkeypatch, tmp_path):
    monkeypatch.setitem(BACKENDS, "exploding", _ExplodingBackend())
    plan = Plan(Selection(("levit_128s",), ("exploding", "torch",), (1,), ("fp32",), Settings(threads=1), cache_dir=str(tmp_path)), FAST)
    entries = execute(plan)
    assert (entries[0].status, entries[0].reason) == ("failed", "exporter said no")
    assert entries[1].status == "ok"


@pytest.mark.skipif("bf16" not in native_precisions(),
                    reason="this CPU has no bf16 units: OpenVINO computes bf16 requests in f32, so there is nothing to catch")
def test_bf16_is_caught_by_fp32_parity(models, cache):
    """OpenVINO computing in bf16 where f32 was asked would be caught: the bf16 result fails fp32 tolerances."""
    _, fused, x, want = models("levit_128s")
    bf16 = BACKENDS["openvino"].prepare(fused, model_id("levit_128s", fused), x, Settings(threads=2, precision="bf16"), cache)
    out = bf16.runner(x)
    assert compare_logits(out, want, "bf16").ok
    f32 = BACKENDS["openvino"].prepare(fused, model_id("levit_128s", fused), x, Settings(threads=2), cache)
    assert compare_logits(f32.runner(x), want, "fp32").max_rel_diff < compare_logits(out, want, "fp32").max_rel_diff


def test_default_backends():
    assert default_backends("cpu")[0] in ("torch", "torchscript")
    assert set(default_backends("cpu")) == {"torch", "torchscript", "onnxruntime", "openvino"}
    assert default_backends("cuda")[:2] == ["torch", "torch-compile"]


@pytest.mark.slow
def test_torch_compile_cpu_compiles_once(cache):
    """Parity and the timed call reuse the graph compiled in prepare.  A recompile per model used
    to exhaust dynamo's per-code recompile limit, after which later models of a family silently ran
    eager while labelled torch-compile (the first H100 paper run, docs/performance.md).

    LeViT-128S's own code with one block per stage at 64 px: every kind of layer the family has,
    compiled in about 45 s on the 2-core VM instead of 60 s for the full model."""
    from dataclasses import replace

    from levit_bench.models.levit import LEVIT_CONFIGS, Levit

    torch.manual_seed(0)
    ref = randomize_norms(Levit(replace(LEVIT_CONFIGS["levit_128s"], depth=(1, 1, 1), img_size=64)).eval())
    fused = lb.fuse(ref)
    x = parity_input(BATCH, 64)
    with torch.no_grad():
        want = ref(x)
    # channels_last makes the runner convert the input into a new tensor (as .to("cuda") does),
    # which is where an inference tensor and a normal one used to differ
    settings = Settings(threads=2).with_options(channels_last=True)
    with run_state(2, cache.runtime_dir("inductor")):
        _check_compiles_once(fused, x, want, settings, cache)


def _check_compiles_once(fused, x, want, settings, cache):
    from torch._dynamo.utils import counters

    prepared = BACKENDS["torch-compile"].prepare(fused, ModelId("levit_128s_depth1", 64, weights_hash(fused)), x,
                                                 settings, cache)
    assert prepared.export_s > 0
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    assert compare_logits(prepared.runner(x), want, "fp32").ok
    call = prepared.runner.bind(x)  # bound as bench.execute binds it, outside inference_mode,
    with torch.inference_mode():  # and timed inside it
        call()
    assert counters["stats"]["unique_graphs"] == graphs, "the timed call recompiled"
    if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):
        assert torch._dynamo.config.fail_on_recompile_limit_hit, "a fallback to eager would be timed"
    prepared.runner.close()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda(models, cache, precision):
    _, fused, x, want = models("levit_128s")
    prepared = BACKENDS["torch"].prepare(fused, model_id("levit_128s", fused), x, Settings(device="cuda", precision=precision), cache)
    assert compare_logits(prepared.runner(x), want, precision).ok


def test_the_torchscript_exporter_goes_first_and_the_dynamo_exporter_is_the_fallback(monkeypatch, tmp_path):
    """The exporters' order and what the note and the error say; ``torch.onnx.export`` is a stand-in
    that refuses the exporters named in ``refuse`` (the real exporters are checked by the matrix above)."""
    calls, refuse = [], set()

    def export(model, args, path, dynamo, **kwargs):
        calls.append("dynamo" if dynamo else "torchscript")
        if calls[-1] in refuse:
            raise RuntimeError(f"{calls[-1]} cannot\nsecond line")
        Path(path).write_bytes(b"onnx")

    monkeypatch.setattr(torch.onnx, "export", export)
    model, example = torch.nn.Linear(3, 2), torch.randn(2, 3)
    assert onnx_export._export(model, example, tmp_path / "a.onnx") == "torchscript exporter, opset 17"
    assert calls == ["torchscript"]
    refuse.add("torchscript")
    note = onnx_export._export(model, example, tmp_path / "b.onnx")
    assert calls[1:] == ["torchscript", "dynamo"]
    assert note == "dynamo exporter, opset 18 (torchscript exporter failed: torchscript cannot)"
    refuse.add("dynamo")
    with pytest.raises(lb.errors.ExportError, match=r"^ONNX export failed: torchscript cannot; dynamo exporter: dynamo cannot$"):
        onnx_export._export(model, example, tmp_path / "c.onnx")
