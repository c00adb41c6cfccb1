"""Command line: a thin dispatcher over one module per command (run, list, sysinfo, report,
compare, cache, accuracy, profile).  Exit codes: 0 done, 1 regression (compare), 2 bad input (before anything is
measured), 130 interrupted (finished entries kept)."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from ..errors import UserError
from ..runstate import preserved_environment
from .accuracy import cmd_accuracy
from .args import COMMAND_NAMES, EXIT_BAD_INPUT, EXIT_INTERRUPTED
from .cache import cmd_cache
from .compare import cmd_compare
from .list_models import cmd_list
from .profile import cmd_profile
from .report import cmd_report
from .run import cmd_run
from .sysinfo import cmd_sysinfo

COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": cmd_run,
    "list": cmd_list,
    "sysinfo": cmd_sysinfo,
    "report": cmd_report,
    "compare": cmd_compare,
    "cache": cmd_cache,
    "accuracy": cmd_accuracy,
    "profile": cmd_profile,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with preserved_environment():
        return _dispatch(argv)


def _dispatch(argv: list[str]) -> int:
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        if argv and not argv[0].startswith("-"):
            raise UserError(f"unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)}; or options to measure)")
        return cmd_run(argv)
    except UserError as exc:
        sys.stderr.write(f"levit-bench: error: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("levit-bench: interrupted\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # argparse: --help, --version, bad arguments
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)


assert tuple(COMMANDS) == COMMAND_NAMES, "cli/args.py COMMAND_NAMES lists every command, in order"

__all__ = ["COMMANDS", "main"]
