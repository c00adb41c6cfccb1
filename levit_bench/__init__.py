"""levit-bench: how fast does this vision model run, on this machine, in this runtime?"""
__version__ = "0.1.0"

from .errors import UserError, working_directory_problem  # noqa: E402

if working_directory_problem():  # torch's oneMKL would abort the process with "Cannot load libtorch_cpu.so"
    import sys

    sys.stderr.write(f"levit-bench: error: {working_directory_problem()}\n")
    raise SystemExit(2)

from .zoo import create_model, fuse, list_models, model_spec  # noqa: E402

__all__ = ["UserError", "__version__", "create_model", "fuse", "list_models", "model_spec"]
