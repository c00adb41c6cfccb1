"""Round-trips through files in all three LeViT key layouts, and clear errors for wrong files."""
from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

import levit_bench as lb
from levit_bench.errors import CheckpointError
from levit_bench.models import load_checkpoint
from levit_bench.models.checkpoints import detect_layout, ours_to_official
from levit_bench.models.levit import bias_index

from .conftest import randomize_norms


@pytest.fixture(scope="module")
def timm_state():
    return randomize_norms(timm.create_model("levit_128s", pretrained=False), seed=7).state_dict()


def _official_state(timm_state):
    """What facebookresearch/LeViT saves: official names plus persistent bias indices."""
    official = ours_to_official(timm_state, (2, 3, 4))
    res = [14, 7, 4]
    flat = 0
    for s, d in enumerate((2, 3, 4)):
        if s > 0:
            official[f"blocks.{flat}.attention_bias_idxs"] = bias_index(res[s - 1], 2)
            flat += 2
        for _ in range(d):
            official[f"blocks.{flat}.m.attention_bias_idxs"] = bias_index(res[s])
            flat += 2
    return official


def _assert_same(model, state):
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k].reshape(v.shape)), k


def test_official_layout_keys(timm_state):
    official = _official_state(timm_state)
    assert detect_layout(official) == "official"
    for key in ["patch_embed.0.c.weight", "blocks.2.m.qkv.c.weight", "blocks.3.m.2.c.weight", "head.l.weight", "head_dist.l.weight",
                "blocks.4.kv.c.weight", "blocks.4.q.1.c.weight", "blocks.5.m.0.c.weight"]:
        assert key in official, key


def _round_trips():
    """Every file format with every key layout.  The fast tier has each format once (in timm's
    layout) and each layout once (in a plain .pth); the other six combinations are slow (two model
    builds each)."""
    for layout in ("official", "timm", "old-timm"):
        for fmt in ("pth", "pth-model", "pt-state_dict", "safetensors"):
            fast = layout == "timm" or fmt == "pth"
            yield pytest.param(fmt, layout, id=f"{layout}-{fmt}", marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("fmt, layout", _round_trips())
def test_round_trip(tmp_path, timm_state, fmt, layout):
    state = _official_state(timm_state) if layout == "official" else dict(timm_state)
    if layout == "old-timm":  # old timm: official names, no bias indices
        state = ours_to_official(timm_state, (2, 3, 4))
    path = tmp_path / ("w." + fmt.split("-")[0])
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pth":
        torch.save(state, path)
    else:
        torch.save({fmt.split("-")[1]: state, "epoch": 3}, path)
    for name in ("levit_128s", "levit_128s_conv"):
        model = lb.create_model(name, weights=str(path))
        _assert_same(model, timm_state)


def test_create_model_loads_weights_into_conv_layout_identically(tmp_path, timm_state):
    path = tmp_path / "w.pth"
    torch.save(timm_state, path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a = lb.create_model("levit_128s", weights=str(path))(x)
        b = lb.create_model("levit_128s_conv", weights=str(path))(x)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_wrong_checkpoint_raises_clear_error_and_loads_nothing(tmp_path, timm_state):
    path = tmp_path / "w.pth"
    torch.save(timm_state, path)
    model = lb.create_model("levit_256")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, path)
    msg = str(err.value)
    assert "shape conflicts" in msg and "stem.conv1.linear.weight" in msg and "nothing was loaded" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_and_unexpected_keys_named(tmp_path, timm_state):
    state = dict(timm_state)
    state.pop("head.linear.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    model = lb.create_model("levit_128s")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): head.linear.bias[\s\S]*unexpected keys \(1\): extra.weight"):
        load_checkpoint(model, path)
    load_checkpoint(model, path, strict=False)
    assert torch.equal(model.state_dict()["head.linear.weight"], timm_state["head.linear.weight"])


def test_bias_index_for_other_resolution_rejected(tmp_path, timm_state):
    state = _official_state(timm_state)
    state["blocks.0.m.attention_bias_idxs"] = bias_index(14).flip(0)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="attention-bias index"):
        lb.create_model("levit_128s", weights=str(path))


def test_unreadable_and_absent_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        lb.create_model("levit_128s", weights=str(bad))
    with pytest.raises(CheckpointError, match="not found"):
        lb.create_model("levit_128s", weights=str(tmp_path / "absent.pth"))


def test_loading_into_fused_model_is_refused(tmp_path, timm_state):
    path = tmp_path / "w.pth"
    torch.save(timm_state, path)
    with pytest.raises(CheckpointError, match="before fuse"):
        load_checkpoint(lb.fuse(lb.create_model("levit_128s")), path)
