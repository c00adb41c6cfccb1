"""levit-bench: how fast does this vision model run, on this machine, in this runtime?"""
__version__ = "0.1.0"

from .errors import UserError  # noqa: E402
from .zoo import create_model, fuse, list_models, model_spec  # noqa: E402

__all__ = ["UserError", "__version__", "create_model", "fuse", "list_models", "model_spec"]
