"""Model definitions and checkpoint loading (no runtimes, no timing)."""
from .checkpoints import load_checkpoint, read_state_dict
from .graft import GraftR50DeiT, build_graft
from .levit import LEVIT_CONFIGS, Levit, LevitConfig, build_levit, fuse_levit
from .weights import weights_hash

__all__ = [
    "GraftR50DeiT", "LEVIT_CONFIGS", "Levit", "LevitConfig", "build_graft", "build_levit", "fuse_levit",
    "load_checkpoint", "read_state_dict", "weights_hash",
]
