"""LeViT: a vision transformer in ConvNet's clothing (Graham et al., ICCV 2021).

One configurable network, :class:`Levit`, and the paper's five variants. Two layouts compute the
same function with the same parameters:

* ``token``: activations are ``(B, N, C)`` sequences and projections are ``nn.Linear`` (as the
  official code);
* ``conv``: activations are ``(B, C, H, W)`` maps and projections are 1x1 convolutions (as the
  seed's listing).

Parameter names follow the current timm layout (``stem.conv1.linear.weight``,
``stages.1.downsample.attn_downsample.kv.linear.weight``, ``head.linear.weight``, ...), so timm
weights copy directly and official checkpoints need one key map (see ``checkpoints.py``).

The attention bias is a table indexed by ``(|dx|, |dy|)``.  The unfused model gathers it on every
forward pass, so weights loaded at any time take effect (other implementations cache it in eval mode
and keep stale biases).  :func:`fuse_levit` returns an inference copy with every BatchNorm folded,
the softmax scale folded into the query projection, the bias gathered once into a constant, and the
class and distillation heads merged into one linear layer.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .fold import bn_scale_shift

Layout = Literal["token", "conv"]


# --------------------------------------------------------------------------------------------
# specs


@dataclass(frozen=True)
class LevitConfig:
    """Everything that distinguishes one LeViT from another (the official ``specification``)."""

    embed_dim: tuple[int, ...] = (256, 384, 512)
    key_dim: int = 32
    num_heads: tuple[int, ...] = (4, 6, 8)
    depth: tuple[int, ...] = (4, 4, 4)
    attn_ratio: float = 2.0
    mlp_ratio: float = 2.0
    down_attn_ratio: float = 4.0
    down_mlp_ratio: float = 2.0
    drop_path_rate: float = 0.0
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    distillation: bool = True
    layout: Layout = "token"

    def __post_init__(self) -> None:
        n = len(self.embed_dim)
        if len(self.num_heads) != n or len(self.depth) != n:
            raise ValueError("embed_dim, num_heads and depth need one entry per stage")
        if self.img_size % 16:
            raise ValueError(f"LeViT needs an input size divisible by 16, got {self.img_size}")
        if self.layout not in ("token", "conv"):
            raise ValueError(f"layout must be 'token' or 'conv', got {self.layout!r}")

    @property
    def resolutions(self) -> list[int]:
        """Side of the square feature map entering each stage (14, 7, 4 at 224)."""
        res = [self.img_size // 16]
        for _ in self.embed_dim[1:]:
            res.append((res[-1] - 1) // 2 + 1)
        return res


LEVIT_CONFIGS: dict[str, LevitConfig] = {
    "levit_128s": LevitConfig(embed_dim=(128, 256, 384), key_dim=16, num_heads=(4, 6, 8), depth=(2, 3, 4)),
    "levit_128": LevitConfig(embed_dim=(128, 256, 384), key_dim=16, num_heads=(4, 8, 12), depth=(4, 4, 4)),
    "levit_192": LevitConfig(embed_dim=(192, 288, 384), key_dim=32, num_heads=(3, 5, 6), depth=(4, 4, 4)),
    "levit_256": LevitConfig(embed_dim=(256, 384, 512), key_dim=32, num_heads=(4, 6, 8), depth=(4, 4, 4)),
    "levit_384": LevitConfig(
        embed_dim=(384, 512, 768), key_dim=32, num_heads=(6, 9, 12), depth=(4, 4, 4), drop_path_rate=0.1
    ),
}


# --------------------------------------------------------------------------------------------
# projection + BatchNorm, in both layouts


class ProjNorm(nn.Module):
    """A bias-free projection followed by BatchNorm: the only kind of projection LeViT has.

    ``token`` layout: ``nn.Linear`` on ``(B, N, C)`` with BatchNorm1d over all tokens.
    ``conv`` layout: 1x1 ``nn.Conv2d`` on ``(B, C, H, W)`` with BatchNorm2d.
    """

    def __init__(self, in_dim: int, out_dim: int, layout: Layout, bn_weight_init: float = 1.0):
        super().__init__()
        if layout == "token":
            self.linear: nn.Module = nn.Linear(in_dim, out_dim, bias=False)
            self.bn: nn.Module = nn.BatchNorm1d(out_dim)
        else:
            self.linear = nn.Conv2d(in_dim, out_dim, 1, bias=False)
            self.bn = nn.BatchNorm2d(out_dim)
        self.layout = layout
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.layout == "token":
            return self.bn(x.flatten(0, 1)).reshape_as(x)
        return self.bn(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """One biased Linear/Conv2d computing the same function (BN folded, float64 arithmetic)."""
        return folded_projection(self.linear, self.bn)


class ConvNorm(nn.Module):
    """A bias-free k x k convolution followed by BatchNorm2d (the stem's unit)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 2, padding: int = 1):
        super().__init__()
        self.linear = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(x))

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """One biased Conv2d computing the same function (BN folded, float64 arithmetic)."""
        return folded_projection(self.linear, self.bn)


class NormLinear(nn.Module):
    """Classifier head: BatchNorm1d, dropout, then a linear layer with bias."""

    def __init__(self, in_dim: int, out_dim: int, drop: float = 0.0):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.drop = nn.Dropout(drop)
        self.linear = nn.Linear(in_dim, out_dim)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.drop(self.bn(x)))

    @torch.no_grad()
    def fuse_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias (float64) of ``linear(bn(x))`` as one linear layer (BN before the layer)."""
        scale, shift = bn_scale_shift(self.bn)
        w = self.linear.weight.double()
        return w * scale[None, :], self.linear.bias.double() + w @ shift

    def fuse(self) -> nn.Linear:
        """One Linear computing the same function in eval mode (dropout is the identity there)."""
        w, b = self.fuse_weights()
        return _linear_like(self.linear, w, b)


def folded_projection(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """``bn(layer(x))`` (a bias-free Linear or Conv2d followed by BN) as one biased layer."""
    scale, shift = bn_scale_shift(bn)
    w = layer.weight.double() * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
    if isinstance(layer, nn.Linear):
        return _linear_like(layer, w, shift)
    out = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=True)
    return _with_weights(out, layer.weight, w, shift)


def _linear_like(like: nn.Linear, w: torch.Tensor, b: torch.Tensor) -> nn.Linear:
    return _with_weights(nn.Linear(w.shape[1], w.shape[0], bias=True), like.weight, w, b)


def _with_weights(out: nn.Module, like: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> nn.Module:
    """``out`` on ``like``'s device and dtype, holding ``w`` and ``b`` (rounded once from float64)."""
    out = out.to(device=like.device, dtype=like.dtype)
    with torch.no_grad():
        out.weight.copy_(w.to(like.dtype))
        out.bias.copy_(b.to(like.dtype))
    return out


# --------------------------------------------------------------------------------------------
# attention


def bias_index(resolution: int, stride: int = 1) -> torch.Tensor:
    """Index into the ``(|dx|, |dy|)`` bias table for each (query, key) pair.

    Queries sit on the grid subsampled by ``stride``; keys on the full ``resolution`` grid.  The
    table is flat with ``index = |dx| * resolution + |dy|``, the order of the official code.
    """
    k = torch.arange(resolution)
    q = torch.arange(0, resolution, stride)
    kpos = torch.stack(torch.meshgrid(k, k, indexing="ij")).flatten(1)  # (2, Nk)
    qpos = torch.stack(torch.meshgrid(q, q, indexing="ij")).flatten(1)  # (2, Nq)
    rel = (qpos[:, :, None] - kpos[:, None, :]).abs()
    return rel[0] * resolution + rel[1]


class _BiasedAttention(nn.Module):
    """Shared machinery: the learned bias table, its index, and the fused snapshot of both."""

    attention_bias_idxs: torch.Tensor

    def _init_common(
        self, layout: Layout, key_dim: int, num_heads: int, attn_ratio: float, resolution: int, stride: int
    ) -> None:
        """Sizes, the scale, and the learned ``(|dx|, |dy|)`` bias table with its index."""
        self.layout = layout
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.stride = stride
        self.resolution = resolution
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", bias_index(resolution, stride), persistent=False)
        self.fused = False
        self.sdpa = False  # token layout: F.scaled_dot_product_attention with the bias as additive mask

    def attention_bias(self) -> torch.Tensor:
        """(heads, Nq, Nk) bias; gathered afresh unless fused, so loaded weights always apply."""
        if self.fused:
            return self.bias_dense
        return self.attention_biases[:, self.attention_bias_idxs]

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale + bias) v for q,k,v of shape (B, h, N, d) / (B, h, d, N) in conv."""
        if self.sdpa and self.layout == "token":
            bias = self.attention_bias().to(q.dtype)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0 if self.fused else self.scale)
        if self.layout == "token":
            attn = q @ k.transpose(-2, -1)
        else:
            attn = q.transpose(-2, -1) @ k
        if not self.fused:
            attn = attn * self.scale
        attn = (attn + self.attention_bias()).softmax(dim=-1)
        if self.layout == "token":
            return attn @ v
        return v @ attn.transpose(-2, -1)

    def _fuse_attention(self, query_unit_name: str, query_channels_of_head: int, head_width: int) -> None:
        """Fold BNs, fold the scale into the query projection and snapshot the gathered bias."""
        parent, attr = self._locate(query_unit_name)
        folded = getattr(parent, attr).fuse()
        # rows of the query projection: head h owns channels [h*head_width, h*head_width + key_dim)
        with torch.no_grad():
            rows = torch.zeros(folded.weight.shape[0], dtype=torch.bool)
            for h in range(self.num_heads):
                start = h * head_width
                rows[start : start + query_channels_of_head] = True
            folded.weight[rows] *= self.scale
            folded.bias[rows] *= self.scale
        setattr(parent, attr, folded)
        bias = self.attention_biases.detach()[:, self.attention_bias_idxs].clone()
        del self.attention_biases
        self.register_buffer("bias_dense", bias)
        self.fused = True

    def _locate(self, dotted: str) -> tuple[nn.Module, str]:
        *path, attr = dotted.split(".")
        parent: nn.Module = self
        for p in path:
            parent = getattr(parent, p)
        return parent, attr


class Attention(_BiasedAttention):
    """Multi-head self-attention with the positional bias; value dim = attn_ratio * key_dim."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int, layout: Layout):
        super().__init__()
        self._init_common(layout, key_dim, num_heads, attn_ratio, resolution, 1)
        self.qkv = ProjNorm(dim, num_heads * (2 * key_dim + self.val_dim), layout)
        self.proj = nn.Sequential(
            OrderedDict(act=nn.Hardswish(), ln=ProjNorm(num_heads * self.val_dim, dim, layout, bn_weight_init=0.0))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = [self.key_dim, self.key_dim, self.val_dim]
        if self.layout == "token":
            B, N, _ = x.shape
            q, k, v = self.qkv(x).view(B, N, self.num_heads, -1).transpose(1, 2).split(split, dim=3)
            x = self._attend(q, k, v).transpose(1, 2).reshape(B, N, -1)
        else:
            B, _, H, W = x.shape
            q, k, v = self.qkv(x).view(B, self.num_heads, -1, H * W).split(split, dim=2)
            x = self._attend(q, k, v).reshape(B, -1, H, W)
        return self.proj(x)

    def fuse(self) -> None:
        self._fuse_attention("qkv", self.key_dim, 2 * self.key_dim + self.val_dim)
        self.proj.ln = self.proj.ln.fuse()


class AttentionDownsample(_BiasedAttention):
    """Shrinking attention: queries from the stride-2 subsampled grid, keys/values from all."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: float,
        resolution: int,
        layout: Layout,
        stride: int = 2,
    ):
        super().__init__()
        self._init_common(layout, key_dim, num_heads, attn_ratio, resolution, stride)
        self.resolution_out = (resolution - 1) // stride + 1
        self.kv = ProjNorm(in_dim, num_heads * (key_dim + self.val_dim), layout)
        self.q = nn.Sequential(
            OrderedDict(down=Subsample(stride, resolution, layout), ln=ProjNorm(in_dim, num_heads * key_dim, layout))
        )
        self.proj = nn.Sequential(OrderedDict(act=nn.Hardswish(), ln=ProjNorm(num_heads * self.val_dim, out_dim, layout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resolution_out
        if self.layout == "token":
            B, N, _ = x.shape
            k, v = self.kv(x).view(B, N, self.num_heads, -1).transpose(1, 2).split([self.key_dim, self.val_dim], dim=3)
            q = self.q(x).view(B, r * r, self.num_heads, self.key_dim).transpose(1, 2)
            x = self._attend(q, k, v).transpose(1, 2).reshape(B, r * r, -1)
        else:
            B, _, H, W = x.shape
            k, v = self.kv(x).view(B, self.num_heads, -1, H * W).split([self.key_dim, self.val_dim], dim=2)
            q = self.q(x).view(B, self.num_heads, self.key_dim, r * r)
            x = self._attend(q, k, v).reshape(B, -1, r, r)
        return self.proj(x)

    def fuse(self) -> None:
        self._fuse_attention("q.ln", self.key_dim, self.key_dim)
        self.kv = self.kv.fuse()
        self.proj.ln = self.proj.ln.fuse()


class Subsample(nn.Module):
    """Keep every ``stride``-th position of the square grid (the queries of shrinking attention)."""

    def __init__(self, stride: int, resolution: int, layout: Layout):
        super().__init__()
        self.stride = stride
        self.resolution = resolution
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if self.layout == "conv":
            return x[:, :, ::s, ::s]
        B, _, C = x.shape
        return x.view(B, self.resolution, self.resolution, C)[:, ::s, ::s].reshape(B, -1, C)


# --------------------------------------------------------------------------------------------
# blocks and stages


class Mlp(nn.Module):
    """The transformer MLP, as 1x1 projections + BN with a small expansion ratio."""

    def __init__(self, dim: int, hidden: int, layout: Layout, out_dim: int | None = None):
        super().__init__()
        self.ln1 = ProjNorm(dim, hidden, layout)
        self.act = nn.Hardswish()
        self.ln2 = ProjNorm(hidden, out_dim or dim, layout, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln2(self.act(self.ln1(x)))

    def fuse(self) -> None:
        self.ln1 = self.ln1.fuse()
        self.ln2 = self.ln2.fuse()


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (training only)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class LevitBlock(nn.Module):
    """Residual attention, then residual MLP."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, cfg: LevitConfig, resolution: int, drop_path: float):
        super().__init__()
        self.attn = Attention(dim, key_dim, num_heads, cfg.attn_ratio, resolution, cfg.layout)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.layout)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(x))
        return x + self.drop_path2(self.mlp(x))


class LevitDownsample(nn.Module):
    """Between stages: shrinking attention (no residual) followed by a residual MLP."""

    def __init__(self, in_dim: int, out_dim: int, cfg: LevitConfig, resolution: int, drop_path: float):
        super().__init__()
        self.attn_downsample = AttentionDownsample(
            in_dim, out_dim, cfg.key_dim, in_dim // cfg.key_dim, cfg.down_attn_ratio, resolution, cfg.layout
        )
        self.mlp = Mlp(out_dim, int(out_dim * cfg.down_mlp_ratio), cfg.layout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn_downsample(x)
        return x + self.drop_path(self.mlp(x))


class LevitStage(nn.Module):
    """Optional downsample from the previous stage, then ``depth`` blocks at one resolution."""

    def __init__(self, idx: int, cfg: LevitConfig, down_drop_path: float, block_drop_paths: list[float]):
        super().__init__()
        dim, res = cfg.embed_dim[idx], cfg.resolutions[idx]
        self.downsample: nn.Module = (
            LevitDownsample(cfg.embed_dim[idx - 1], dim, cfg, cfg.resolutions[idx - 1], down_drop_path)
            if idx > 0
            else nn.Identity()
        )
        self.blocks = nn.Sequential(
            *[LevitBlock(dim, cfg.key_dim, cfg.num_heads[idx], cfg, res, dp) for dp in block_drop_paths]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Stem16(nn.Module):
    """Four 3x3 stride-2 conv+BN layers with Hardswish between them: 3xHxW -> C x H/16 x W/16."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv1 = ConvNorm(in_chs, out_chs // 8)
        self.act1 = nn.Hardswish()
        self.conv2 = ConvNorm(out_chs // 8, out_chs // 4)
        self.act2 = nn.Hardswish()
        self.conv3 = ConvNorm(out_chs // 4, out_chs // 2)
        self.act3 = nn.Hardswish()
        self.conv4 = ConvNorm(out_chs // 2, out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = self.act3(self.conv3(x))
        return self.conv4(x)

    def fuse(self) -> None:
        for name in ("conv1", "conv2", "conv3", "conv4"):
            setattr(self, name, getattr(self, name).fuse())


# --------------------------------------------------------------------------------------------
# the network


class Levit(nn.Module):
    """LeViT image classifier.  Eval output is the mean of the class and distillation heads;
    in training mode with distillation it returns both, as the paper's training does."""

    def __init__(self, cfg: LevitConfig):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.num_features = cfg.embed_dim[-1]
        self.stem = Stem16(cfg.in_chans, cfg.embed_dim[0])
        # the official code uses one stochastic-depth rate for every residual branch
        dp = cfg.drop_path_rate
        stages = [LevitStage(i, cfg, dp, [dp] * d) for i, d in enumerate(cfg.depth)]
        self.stages = nn.Sequential(*stages)
        self.head = NormLinear(self.num_features, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.head_dist = (
            NormLinear(self.num_features, cfg.num_classes) if cfg.distillation and cfg.num_classes else None
        )
        self.fused = False

    @property
    def layout(self) -> Layout:
        return self.cfg.layout

    def set_attention(self, impl: str) -> Levit:
        """``"matmul"`` (explicit q·kᵀ, softmax, ·v) or ``"sdpa"`` (``scaled_dot_product_attention``
        with the bias as an additive mask; token layout only, the conv layout keeps matmul)."""
        if impl not in ("matmul", "sdpa"):
            raise ValueError(f"attention must be 'matmul' or 'sdpa', got {impl!r}")
        return use_sdpa(self, impl == "sdpa")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.layout == "token":
            x = x.flatten(2).transpose(1, 2)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = x.mean(1) if self.layout == "token" else x.mean((2, 3))
        if self.fused or self.head_dist is None:
            return self.head(x)
        out, dist = self.head(x), self.head_dist(x)
        if self.training:
            return out, dist
        return (out + dist) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def fuse_levit(model: Levit) -> Levit:
    """Inference copy of ``model``: every BN folded, one merged head, constant attention bias,
    in-place activations.

    The argument is left untouched; the copy is in eval mode and keeps the model's dtype and device.
    """
    fused = copy.deepcopy(model).eval()
    fused.stem.fuse()
    for m in fused.modules():
        if isinstance(m, nn.Hardswish):
            m.inplace = True  # every activation's input is a fresh tensor; inference only (no autograd)
    for m in fused.modules():
        if isinstance(m, (Attention, AttentionDownsample, Mlp)):
            m.fuse()
    if isinstance(fused.head, NormLinear):
        w, b = fused.head.fuse_weights()
        if fused.head_dist is not None:  # eval output is the mean of both heads: one layer
            w2, b2 = fused.head_dist.fuse_weights()
            w, b = (w + w2) / 2, (b + b2) / 2
        fused.head = _linear_like(fused.head.linear, w, b)
        fused.head_dist = None
    fused.fused = True
    return fused


def use_sdpa(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every LeViT attention (token layout) to ``F.scaled_dot_product_attention``; same function."""
    for m in model.modules():
        if isinstance(m, _BiasedAttention):
            m.sdpa = enabled
    return model


def build_levit(name: str, *, num_classes: int = 1000, img_size: int | None = None, **overrides) -> Levit:
    """Build a paper variant by name (``levit_256``, ``levit_256_conv``) with optional overrides."""
    base = name.removesuffix("_conv")
    if base not in LEVIT_CONFIGS:
        raise KeyError(name)
    cfg = LEVIT_CONFIGS[base]
    if name.endswith("_conv"):
        overrides.setdefault("layout", "conv")
    for key in ("embed_dim", "num_heads", "depth"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    cfg = replace(cfg, num_classes=num_classes, img_size=img_size or cfg.img_size, **overrides)
    return Levit(cfg)


__all__ = ["Levit", "LevitConfig", "LEVIT_CONFIGS", "build_levit", "fuse_levit", "bias_index", "use_sdpa"]
