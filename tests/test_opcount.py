"""Operation counts (issue 13): torch's FLOP counter on the models as timed, pinned to the papers."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from levit_bench import opcount, zoo
from levit_bench.cli import main
from levit_bench.errors import UserError
from levit_bench.opcount import OpCount, count_ops, model_ops

# multiply-adds, millions, as the papers print them (LeViT Table 3; EfficientNet Table 2; DeiT as cited)
LEVIT_PAPER = {"levit_128s": 305, "levit_128": 406, "levit_192": 658, "levit_256": 1120, "levit_384": 2353}
BASELINES_PUBLISHED = {
    "efficientnet_b0": 390, "efficientnet_b1": 700, "efficientnet_b2": 1000, "efficientnet_b3": 1800,
    "efficientnet_b4": 4200, "deit_tiny": 1300, "deit_small": 4600, "deit_base": 17600,
}


def test_a_hand_built_module_counts_what_a_hand_computation_gives():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    conv = (4 * 8 * 8) * (3 * 3 * 3)  # one MAC per output element and kernel tap
    linear = 4 * 8 * 8 * 5
    assert count_ops(model, 8) == OpCount(macs=conv + linear, params=(4 * 27 + 4) + (256 * 5 + 5))


class _TokenAttention(nn.Module):
    """The image's pixels as 64 tokens of 3 channels, attending to each other through SDPA."""

    def forward(self, x):
        t = x.flatten(2).transpose(1, 2).unsqueeze(1).contiguous()  # (1, 1, 64, 3): the fused CPU kernel's case
        return nn.functional.scaled_dot_product_attention(t, t, t)


def test_cpu_attention_is_counted():
    # torch 2.14's counter has no formula for the fused CPU SDPA kernel (pytorch/pytorch#195460)
    assert count_ops(_TokenAttention(), 8).macs == 2 * 64 * 64 * 3  # q·kᵀ and (scores)·v


def test_levit_counts_the_same_with_sdpa_or_matmul_attention():
    fused = zoo.subject("levit_128s").fused
    matmul = count_ops(fused, 224)
    assert count_ops(fused.set_attention("sdpa"), 224) == matmul


def test_counting_leaves_the_model_in_its_mode():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Dropout())
    model.train()
    count_ops(model, 4)
    assert model.training


def _fast_first(names, fast):
    """``names`` as parameters, all but ``fast`` marked slow (each count builds a model: about a
    second or more on 2 cores)."""
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", _fast_first(sorted(LEVIT_PAPER), {"levit_128s"}))
def test_levit_macs_within_two_percent_of_the_paper(name):
    paper = LEVIT_PAPER[name]
    assert zoo.model_spec(name).published.flops_m == paper
    for variant in (name, name + "_conv"):
        macs_m = model_ops(variant).macs / 1e6
        assert abs(macs_m / paper - 1) < 0.02, (variant, macs_m, paper)


@pytest.mark.parametrize("name", _fast_first(sorted(BASELINES_PUBLISHED), {"efficientnet_b0", "deit_tiny"}))
def test_baseline_macs_within_five_percent_of_the_published_figures(name):
    published = BASELINES_PUBLISHED[name]
    pub = zoo.model_spec(name).published
    assert pub.flops_m == published and pub.flops_source
    macs_m = model_ops(name).macs / 1e6
    assert abs(macs_m / published - 1) < 0.05, (name, macs_m, published)


@pytest.mark.parametrize("size", _fast_first(["tiny", "small", "base"], {"tiny"}))
def test_distilled_deit_costs_one_token_more(size):
    # no figure of their own is published for them: one more token through 12 layers, under 1% more
    plain, distilled = model_ops(f"deit_{size}").macs, model_ops(f"deit_{size}_distilled").macs
    assert 1.0 < distilled / plain < 1.01
    assert zoo.model_spec(f"deit_{size}_distilled").published is None or \
        zoo.model_spec(f"deit_{size}_distilled").published.flops_m is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["levit_128s", "levit_128s_conv", "deit_tiny", "efficientnet_b0",
                                  "graft_r50s2_deits6"])
def test_counting_on_the_meta_device_equals_counting_the_timed_model(name):
    # on meta, attention runs torch's math decomposition (counted as bmm); on CPU, the fused kernel
    subject = zoo.subject(name)
    assert model_ops(name) == count_ops(subject.fused, subject.model_id.img_size)


def test_model_ops_counts_once_per_model_and_size():
    assert model_ops("levit_128s") is model_ops("levit_128s", 224)


def test_model_ops_of_an_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model"):
        model_ops("levit_999")


# ---------------------------------------------------------------------------------------------
# levit-bench list

def test_list_json_has_counts_and_published_figures(capsys):
    assert main(["list", "efficientnet_b[01]", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["efficientnet_b0", "efficientnet_b1"]
    for r in rows:
        assert r["error"] is None and r["img_size"] == zoo.model_spec(r["name"]).img_size
        assert r["macs"] == model_ops(r["name"]).macs and r["params"] == model_ops(r["name"]).params
        assert r["published"]["flops_m"] == BASELINES_PUBLISHED[r["name"]]


def test_list_json_keeps_a_failing_model_as_its_error(capsys, monkeypatch):
    real = opcount.model_ops

    def failing(name, img_size=None):
        if name == "levit_128s":
            raise RuntimeError("cannot build\nsecond line")
        return real(name, img_size)

    monkeypatch.setattr(opcount, "model_ops", failing)
    assert main(["list", "levit_128s*", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["levit_128s"]["error"] == "cannot build" and rows["levit_128s"]["macs"] is None
    assert rows["levit_128s_conv"]["error"] is None and rows["levit_128s_conv"]["macs"] > 0


def test_plain_list_builds_nothing_and_ops_adds_the_counted_columns(capsys, monkeypatch):
    monkeypatch.setattr(opcount, "model_ops", lambda *a, **k: pytest.fail("a plain list must not build models"))
    assert main(["list", "levit_128s"]) == 0
    assert "MACs (counted)" not in capsys.readouterr().out
    monkeypatch.setattr(opcount, "model_ops", lambda *a, **k: OpCount(304_276_832, 7_366_152))
    assert main(["list", "levit_128s", "--ops"]) == 0
    out = capsys.readouterr().out
    assert "MACs (counted)" in out and "304M" in out and "7,366,152" in out


def test_list_bad_option_exits_2(capsys):
    assert main(["list", "--bogus"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_count_ops_needs_a_positive_size():
    with pytest.raises(ValueError):
        count_ops(nn.Conv2d(3, 1, 1), 0)


def test_torch_counter_gap_is_filled_only_while_torch_has_it():
    from torch.utils import flop_counter

    gap = opcount.missing_formulas()
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    assert (cpu_sdpa in gap) == (cpu_sdpa not in flop_counter.flop_registry)
