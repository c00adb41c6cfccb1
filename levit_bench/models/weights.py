"""What a model's weights are, as a short hash: the identity of a model beside its name and size.

It lives with the models, not with the export cache: the zoo names a model by it (``ModelId``), and
everything keyed by a model (exports, int8 artifacts, results) reads it from there.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_hash(model: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (names, dtypes, shapes, bytes), 16 hex digits:
    two models with equal hashes compute the same function, so their exports can be shared."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
