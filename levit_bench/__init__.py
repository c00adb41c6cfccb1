"""levit-bench: how fast does this vision model run, on this machine, in this runtime?"""
from .errors import UserError
from .zoo import create_model, fuse, list_models, model_spec

__version__ = "0.1.0"
__all__ = ["UserError", "__version__", "create_model", "fuse", "list_models", "model_spec"]
