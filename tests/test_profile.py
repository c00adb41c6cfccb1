"""``levit-bench profile``: the category rules on names each runtime really reports, the trace
parsing, the record's JSON form, and one short end-to-end run per profiler."""
from __future__ import annotations

import json
import os
import sys

import pytest

from levit_bench.cli import main
from levit_bench.profiling import CATEGORIES, NAMED, OpTime, Profile
from levit_bench.spec import Identity
from levit_bench.profiling.categories import (inductor_kernel_name, is_depthwise, openvino_category, ort_category,
                                              snippet_name, torch_category)
from levit_bench.profiling.ort_profile import node_times
from levit_bench.profiling.probe import ProfileFailed
from levit_bench.profiling.torch_profile import quiet_kineto

# --- torch.profiler names (eager, TorchScript, torch.compile on this machine) --------------------

DW_SHAPES = [[16, 32, 130, 130], [32, 1, 3, 3], [32], [], [], [], []]  # efficientnet_b2, groups = 32
STEM_SHAPES = [[16, 3, 260, 260], [32, 3, 3, 3], [32], [], [], [], []]


@pytest.mark.parametrize("name, shapes, expected", [
    ("aten::addmm", None, "matmul"),
    ("aten::bmm", None, "matmul"),
    ("aten::mkldnn_convolution", DW_SHAPES, "depthwise_conv"),
    ("aten::mkldnn_convolution", STEM_SHAPES, "conv"),
    ("mkldnn::_convolution_pointwise", DW_SHAPES, "depthwise_conv"),  # torch.compile's extern conv
    ("aten::conv2d", [[1, 1, 28, 28], [8, 1, 3, 3]], "conv"),  # one input channel: not depthwise
    ("aten::_softmax", None, "attention_softmax"),
    ("aten::hardswish_", None, "elementwise"),
    ("aten::silu_", None, "elementwise"),
    ("aten::native_layer_norm", None, "norm"),
    ("aten::copy_", None, "layout"),
    ("aten::to_mkldnn", None, "layout"),  # TorchScript's MKLDNN layout conversions
    ("aten::_to_dense", None, "layout"),
    ("aten::mean", None, "other"),
    ("forward", None, "other"),  # TorchScript's interpreter, holding unrecorded prim:: ops
    ("graph_0_cpp_fused__softmax_add_view_6", None, "attention_softmax"),
    ("graph_0_cpp_fused_convolution_hardswish_0", None, "elementwise"),
    ("graph_0_cpp_fused__unsafe_view_add_clone_split_with_sizes_transpose_view_14", None, "elementwise"),
    ("graph_0_cpp_fused_clone_split_with_sizes_transpose_view_24", None, "layout"),
    ("graph_1_cpp_fused_native_layer_norm_3", None, "norm"),
    ("graph_0_cpp_fused_convolution_0", None, "layout"),  # the input transposed for the extern convolution
    ("graph_0_cpp_packed_gemm_2", None, "matmul"),  # max-autotune's GEMM template
])
def test_torch_names_fall_in_their_category(name, shapes, expected):
    assert torch_category(name, shapes) == expected


@pytest.mark.parametrize("name", ["## Call CompiledFxGraph fb7viblyzlg6yzzltn2gbbbgtpodi7vdq4 ##",
                                  "TorchDynamo Cache Lookup", "Torch-Compiled Region: 0/0"])
def test_torch_framework_markers_are_not_ops(name):
    assert torch_category(name) is None


def test_inductor_kernels_are_named_without_graph_and_index():
    assert inductor_kernel_name("graph_0_cpp_fused__softmax_add_view_6") == "cpp_fused__softmax_add_view"
    assert inductor_kernel_name("graph_0_cpp_packed_gemm_2") == "cpp_packed_gemm"
    assert inductor_kernel_name("aten::addmm") is None


def test_depthwise_needs_one_channel_per_group_and_more_than_one_channel():
    assert is_depthwise([16, 720, 17, 17], [720, 1, 5, 5])
    assert not is_depthwise([16, 720, 17, 17], [120, 720, 1, 1])
    assert not is_depthwise([1, 1, 28, 28], [8, 1, 3, 3])
    assert not is_depthwise(None, [8, 1, 3, 3])


# --- ONNX Runtime op types (optimised graph, NCHWc and contrib ops) ------------------------------

@pytest.mark.parametrize("op, shapes, expected", [
    ("MatMul", None, "matmul"), ("FusedMatMul", None, "matmul"), ("Gemm", None, "matmul"),
    ("Conv", [[16, 32, 130, 130], [32, 1, 3, 3]], "depthwise_conv"),
    ("Conv", [[16, 16, 130, 130], [16, 16, 1, 1], [16, 16, 130, 130]], "conv"),  # NCHWc conv with fused sum
    ("FusedConv", [[16, 22, 1, 1], [528, 22, 1, 1]], "conv"),
    ("QuickGelu", None, "elementwise"), ("HardSigmoid", None, "elementwise"), ("Mul", None, "elementwise"),
    ("Softmax", None, "attention_softmax"), ("LayerNormalization", None, "norm"),
    ("ReorderInput", None, "layout"), ("ReorderOutput", None, "layout"), ("Transpose", None, "layout"),
    ("Split", None, "layout"), ("ReduceMean", None, "other"),
])
def test_ort_op_types_fall_in_their_category(op, shapes, expected):
    assert ort_category(op, shapes) == expected


def _ort_event(name, ts, dur, op=None, shapes=()):
    if op is None:
        return {"cat": "Session", "name": name, "ts": ts, "dur": dur}
    return {"cat": "Node", "name": name, "ts": ts, "dur": dur,
            "args": {"op_name": op, "input_type_shape": [{"float": s} for s in shapes]}}


def test_ort_trace_keeps_only_the_profiled_runs_kernels():
    events = [_ort_event("session_initialization", 0, 5)]
    for run, start in enumerate((100, 200, 300)):
        events += [_ort_event("model_run", start, 50),
                   _ort_event("conv_kernel_time", start + 1, 10, "Conv", [[2, 8, 4, 4], [8, 1, 3, 3]]),
                   _ort_event("conv_fence_before", start + 1, 0, "Conv"),  # not a kernel
                   _ort_event("mm_kernel_time", start + 20, 20 + run, "MatMul")]
    ops = {(o.name, o.category): (o.seconds, o.count) for o in node_times(events, [1, 2], 3).per_call(2)}
    assert ops == {("Conv", "depthwise_conv"): (pytest.approx(10e-6), 1), ("MatMul", "matmul"): (pytest.approx(21.5e-6), 1)}
    with pytest.raises(ProfileFailed, match="holds 3 runs, 4 were made"):
        node_times(events, [1], 4)


# --- OpenVINO runtime node types ------------------------------------------------------------------

@pytest.mark.parametrize("node, exec_type, expected", [
    ("FullyConnected", "gemm_mlas_f32", "matmul"), ("FullyConnected", "brgemm_avx2_f32", "matmul"),
    ("Convolution", "brgconv_avx2_1x1_f32", "conv"), ("Convolution", "brgconv_avx2_f32", "conv"),
    ("GroupConvolution", "brgconv_avx2_dw_f32", "depthwise_conv"), ("GroupConvolution", "jit_avx2_f32", "conv"),
    ("Reorder", "jit_uni_f32", "layout"), ("Transpose", "unknown_f32", "layout"),
    ("VariadicSplit", "ref_f32", "layout"), ("Softmax", "jit_avx2_f32", "attention_softmax"),
    ("MVN", "jit_avx2_f32", "norm"), ("Eltwise", "jit_avx2_f32", "elementwise"), ("Reduce", "jit_avx2_f32", "other"),
])
def test_openvino_nodes_fall_in_their_category(node, exec_type, expected):
    assert openvino_category(node, exec_type) == expected


def test_openvino_snippets_are_classified_by_what_they_hold():
    mha = ["Add", "MatMul", "MatMul", "Softmax", "Transpose"]  # LeViT's attention as one snippet
    assert openvino_category("Subgraph", "jit_avx2_f32", mha) == "attention_softmax"
    assert snippet_name(mha) == "Subgraph[Add, MatMul×2, Softmax, Transpose]"
    assert openvino_category("Subgraph", "jit_avx2_f32", ["Add", "Add"]) == "elementwise"
    assert openvino_category("Subgraph", "jit_avx2_f32", ["Multiply", "Sigmoid"]) == "elementwise"
    assert openvino_category("Subgraph", "jit_avx2_f32", ["Transpose", "Reshape"]) == "layout"
    # contents unknown: elementwise only when the shapes say no matmul or reduction can be inside
    assert openvino_category("Subgraph", "jit_avx2_f32", [], elementwise_shapes=True) == "elementwise"
    assert openvino_category("Subgraph", "jit_avx2_f32", None, elementwise_shapes=False) == "other"


class _FakeCounters:
    """A request whose ``get_profiling_info`` gives what OpenVINO's does: per node, the running mean
    over every inference so far, in whole microseconds."""

    def __init__(self):
        self.totals_us = {"mm": 0, "sm": 0}
        self.inferences = 0

    def infer(self, mm_us: int, sm_us: int) -> None:
        self.totals_us["mm"] += mm_us
        self.totals_us["sm"] += sm_us
        self.inferences += 1

    def get_profiling_info(self):
        from datetime import timedelta
        from types import SimpleNamespace

        return [SimpleNamespace(node_name=n, node_type="FullyConnected" if n == "mm" else "Softmax", exec_type="x",
                                status="Status.EXECUTED",
                                real_time=timedelta(microseconds=t // self.inferences))
                for n, t in self.totals_us.items()]


def test_openvino_counters_running_means_are_turned_into_per_call_times():
    from types import SimpleNamespace

    from levit_bench.harness import TimingOptions
    from levit_bench.profiling.openvino_profile import OpenVinoProbe
    from levit_bench.profiling.probe import Probe

    request = _FakeCounters()
    probe = OpenVinoProbe.__new__(OpenVinoProbe)  # the counter arithmetic alone, without OpenVINO
    Probe.__init__(probe, lambda: request.infer(400, 100))
    probe.runner, probe.kinds, probe._before, probe._runs_before = SimpleNamespace(request=request), {}, None, 0
    request.infer(5000, 900)  # the slow first inference, then warm-up: all in the means
    probe.runs = 1
    probe.warm(TimingOptions(warmup_s=0, warmup_calls=1))
    probe.profiled_block(3)
    ops = {o.category: o for o in probe.finish()}
    assert ops["matmul"].seconds == pytest.approx(400e-6, abs=2e-6) and ops["matmul"].count == 1
    assert ops["attention_softmax"].seconds == pytest.approx(100e-6, abs=2e-6)
    request.infer(400, 100)  # a parity call after the baseline, say: it cannot be split off
    probe.runs += 1
    with pytest.raises(ProfileFailed, match="outside the profiled calls"):
        probe.finish()


# --- the paired arms, through the schedule --------------------------------------------------------

class _CountingProbe:
    """A probe whose profiled call is its own (a twin): every call on it counted, blocks logged."""

    @staticmethod
    def make(log: list[str], rewarms: bool = True, fail_at: int | None = None):
        from levit_bench.harness import time_calls
        from levit_bench.profiling.probe import Probe

        class Counting(Probe):
            twin = True

            def _profiled_block(self, n: int) -> list[float]:
                if fail_at is not None and self.profiled_calls >= fail_at:
                    raise ProfileFailed("the profiler lost its trace\nmore")
                log.append("profiled block")
                return time_calls(self.call, n)

            def finish(self):
                return []

        probe = Counting(lambda: log.append("twin"))
        probe.rewarms = rewarms
        return probe


def test_paired_arms_run_through_the_schedule_in_the_same_rounds():
    from levit_bench.profiling.collect import ProfileOptions, _interleaved

    log: list[str] = []
    probe = _CountingProbe.make(log)
    options = ProfileOptions(calls=8, min_time_s=0.0, rounds=4, warmup_s=0.0)
    plain, profiled = _interleaved(lambda: log.append("plain"), probe, options)
    assert len(plain) == len(profiled) == 4 and all(len(r) == 2 for r in plain + profiled)  # 8 calls over 4 rounds
    assert probe.profiled_calls == 8 and log.count("profiled block") == 4
    assert probe.runs == log.count("twin")  # warm-up and re-warms counted: the ORT trace is cut by run index


def test_a_probe_that_cannot_rewarm_leaves_both_arms_unrewarmed():
    from levit_bench.profiling.collect import ProfileOptions, _interleaved

    logs = []
    for _ in range(2):
        log: list[str] = []
        probe = _CountingProbe.make(log, rewarms=False)
        _interleaved(lambda: log.append("plain"), probe, ProfileOptions(calls=6, min_time_s=0.0, rounds=3, warmup_s=0.0))
        warm_calls = 2  # the first call, then one (warmup_s=0 is spent at once)
        assert log.count("plain") == warm_calls + 6 and log.count("twin") == warm_calls + 6  # no warm-up round
        logs.append(log)
    assert logs[0] == logs[1]  # the schedule's seeded order


def test_a_failing_profiled_block_fails_the_profile_with_its_reason():
    from levit_bench.profiling.collect import ProfileOptions, _interleaved

    probe = _CountingProbe.make([], fail_at=2)
    with pytest.raises(ProfileFailed, match="^the profiler lost its trace$"):
        _interleaved(lambda: None, probe, ProfileOptions(calls=4, min_time_s=0.0, rounds=2, warmup_s=0.0))


# --- the record -----------------------------------------------------------------------------------

def _profile() -> Profile:
    ops = [OpTime("aten::addmm", "matmul", 0.006, 40), OpTime("aten::_softmax", "attention_softmax", 0.002, 11),
           OpTime("aten::empty", "other", 0.001, 50), OpTime("aten::mkldnn_convolution", "depthwise_conv", 0.001, 4)]
    return Profile(Identity("levit_128s", "torch", "cpu", "fp32", 1, 2, 224), profiler="torch.profiler", ops=ops,
                   unprofiled_rounds=[[0.010, 0.010], [0.011, 0.009], [0.010, 0.010]],
                   profiled_rounds=[[0.0125, 0.0125], [0.013, 0.012], [0.0125, 0.0125]], notes=["a note"])


def test_profile_shares_coverage_and_overhead():
    p = _profile()
    assert list(p.categories) == list(CATEGORIES)
    assert sum(p.categories.values()) == pytest.approx(1.0)
    assert p.categories["matmul"] == pytest.approx(0.6) and p.categories["other"] == pytest.approx(0.1)
    assert p.coverage == pytest.approx(0.9) and len(NAMED) == 7
    assert p.calls == 6 and p.wall_s == pytest.approx(0.0125) and p.op_share_of_wall == pytest.approx(0.8)
    assert p.unprofiled_s == pytest.approx(0.010) and p.profiled_s == pytest.approx(0.0125)
    assert p.overhead == pytest.approx(0.25)  # paired by round: every round's medians are 10 and 12.5 ms
    assert p.overhead_ci95 == pytest.approx((0.25, 0.25))
    assert [o.name for o in p.top(1, "other")] == ["aten::empty"]


def test_overhead_interval_widens_with_round_to_round_noise():
    p = _profile()
    p.profiled_rounds = [[0.0125], [0.0100], [0.0150]]
    p.unprofiled_rounds = [[0.010], [0.010], [0.010]]
    lo, hi = p.overhead_ci95
    assert lo < 0 < p.overhead < hi  # a 25% mean overhead that these three rounds cannot tell from none


def test_profile_json_round_trip():
    p = _profile()
    data = json.loads(json.dumps(p.to_dict()))
    assert {"model", "backend", "categories", "coverage", "overhead", "overhead_ci95", "calls", "op_s", "wall_s",
            "unprofiled_rounds", "profiled_rounds", "ops"} <= set(data)
    assert data["ops"][0]["fraction"] == pytest.approx(0.6)
    back = Profile.from_dict(data)
    assert back == p
    data["ops"][0]["category"] = "magic"
    with pytest.raises(ValueError, match="unknown op categories"):
        Profile.from_dict(data)


def test_failed_profile_has_no_categories_and_valid_json():
    p = Profile(Identity("m", "openvino", "cpu", "fp32", 1, 2, 224), status="failed", reason="parity failed")
    data = json.loads(json.dumps(p.to_dict(), allow_nan=False))
    assert data["categories"] == {} and data["overhead"] is None and data["status"] == "failed"
    assert data["overhead_ci95"] == [None, None] and data["calls"] == 0


def test_the_tables_and_the_figure_of_profiles(tmp_path):
    """What ``profile`` prints and draws, from records (the end-to-end run below is slow)."""
    from rich.console import Console

    from levit_bench.profiling.plot import plot_profiles, profiles_png
    from levit_bench.profiling.table import categories_table, ops_table, summary_lines

    p = _profile()
    failed = Profile(Identity("m", "openvino", "cpu", "fp32", 1, 2, 224), status="failed", reason="parity failed")
    con = Console(width=250, record=True)
    con.print(categories_table([p, failed]))
    con.print(ops_table(p, 2))
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in con.export_text().splitlines()
            if line.startswith("│")]
    levit, broken = rows[0], rows[1]
    assert levit[:3] == ["levit_128s", "torch", "60.0%"]  # the matmul share
    assert levit[-4:] == ["90.0%", "10.00", "12.50", "+25.0% [+25.0, +25.0]"]  # coverage, op, wall, overhead
    assert broken[:3] == ["m", "openvino", "failed: parity failed"]
    assert [r[0] for r in rows[2:]] == ["aten::addmm", "aten::_softmax", "aten::empty"]  # top two, largest "other"
    lines = summary_lines(p)
    assert "profiler overhead +25.0%" in lines[0] and "paired over 3 rounds" in lines[0]
    assert lines[1:] == [f"{p.label()}: a note"]
    png = plot_profiles([p, failed], tmp_path / "sub" / "p.png")  # the failed entry is left out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    with pytest.raises(ValueError, match="no profiled entry"):
        profiles_png([failed])


def test_kineto_status_lines_are_dropped_and_other_lines_kept(capfd):
    with quiet_kineto():
        os.write(sys.stderr.fileno(), b"USDT:2026-11-27 12:59:54 1:1 SyncActivityProfilerHandler.cpp:39] "
                                      b"profiler_start\nsomething that matters\n")
    err = capfd.readouterr().err
    assert "something that matters" in err and "USDT" not in err


# --- end to end -----------------------------------------------------------------------------------

# cache_args (conftest): the session's shared export cache, where levit_128s's exports may already be
FAST = ["--threads", "1", "--calls", "2", "--min-time", "0.02", "--warmup", "0"]


@pytest.mark.slow
def test_profile_command_end_to_end(tmp_path, capsys, cache_args):
    png = tmp_path / "profile.png"
    code = main(["profile", "--model", "levit_128s", "--backend", "torch,onnxruntime,openvino,torchscript",
                 "--batch-size", "2", "--json", "--png", str(png), *FAST, *cache_args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert [(d["model"], d["backend"]) for d in data] == [
        ("levit_128s", b) for b in ("torch", "onnxruntime", "openvino", "torchscript")]
    for d in data:
        assert d["status"] == "ok", d["reason"]
        assert set(d["categories"]) == set(CATEGORIES)
        assert sum(d["categories"].values()) == pytest.approx(1.0)
        assert d["calls"] >= 2 and d["unprofiled_s"] > 0 and d["profiled_s"] > 0 and d["op_s"] > 0
        assert d["categories"]["matmul"] > 0.3, d  # LeViT is mostly matrix multiplies in every runtime
        assert Profile.from_dict(d).to_dict() == d
        if d["backend"] != "torchscript":  # TorchScript hides its convolutions in "forward" (said in a note)
            assert d["coverage"] >= 0.9, (d["backend"], d["ops"][:5])
    ov = next(d for d in data if d["backend"] == "openvino")
    assert ov["categories"]["attention_softmax"] > 0  # the attention snippets are found and named
    assert ov["op_share_of_wall"] < 1.05  # the counters' running means are undone, not summed
    script = next(d for d in data if d["backend"] == "torchscript")
    assert any("prim::mkldnn_convolution" in n for n in script["notes"])
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "coverage" in captured.err and "overhead" in captured.err  # the table, on stderr with --json


@pytest.mark.parametrize("args, message", [
    (["--model", "levit_2566"], "unknown model 'levit_2566'"),
    (["--backend", "tensorrt"], "unknown backend 'tensorrt'"),
    (["--device", "cuda"], "cuda"),  # no CUDA here: the front door's device check; with one, profiling refuses it
    (["--backend", "onnxruntime", "--precision", "fp16"], "cannot profile onnxruntime"),
    (["--backend", "openvino", "--openvino-mode", "async"], "profile --openvino-mode sync"),
    (["--png", "."], "is a folder"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
])
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(["profile", *args]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("levit-bench: error:") and message in last
    assert "Traceback" not in err
