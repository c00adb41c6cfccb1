"""Command line: a thin dispatcher over one module per command (run, list, sysinfo, report,
compare, cache, accuracy, profile, ab, load, history, plan, merge).  Exit codes: 0 done, 1 regression (compare, ab,
history --fail-on-change), 2 bad input (before anything is measured), 130 interrupted, 143 / 129
stopped by SIGTERM / SIGHUP (finished entries kept in each case), 141 stdout closed early (a broken pipe).  Every command runs inside :mod:`.guard` (signals, stdout/stderr)."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .guard import reserve_standard_fds

reserve_standard_fds()  # before any library opens a file that could land on a closed descriptor 2

from .. import allocator  # noqa: E402
from ..errors import UserError, first_line, is_out_of_memory, working_directory_problem  # noqa: E402
from ..runstate import preserved_environment  # noqa: E402
from .guard import Terminated, guarded_streams, output_exit_code, stop_signals_as_interrupts  # noqa: E402
from .ab import cmd_ab  # noqa: E402
from .accuracy import cmd_accuracy  # noqa: E402
from .args import COMMAND_NAMES, EXIT_BAD_INPUT, EXIT_INTERRUPTED  # noqa: E402
from .cache import cmd_cache  # noqa: E402
from .compare import cmd_compare  # noqa: E402
from .history import cmd_history  # noqa: E402
from .list_models import cmd_list  # noqa: E402
from .load import cmd_load  # noqa: E402
from .merge import cmd_merge  # noqa: E402
from .plan import cmd_plan  # noqa: E402
from .profile import cmd_profile  # noqa: E402
from .report import cmd_report  # noqa: E402
from .run import cmd_run  # noqa: E402
from .sysinfo import cmd_sysinfo  # noqa: E402

COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": cmd_run,
    "list": cmd_list,
    "sysinfo": cmd_sysinfo,
    "report": cmd_report,
    "compare": cmd_compare,
    "cache": cmd_cache,
    "accuracy": cmd_accuracy,
    "profile": cmd_profile,
    "ab": cmd_ab,
    "load": cmd_load,
    "history": cmd_history,
    "plan": cmd_plan,
    "merge": cmd_merge,
}
assert tuple(COMMANDS) == COMMAND_NAMES, "the main --help names every command (args.COMMAND_NAMES)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with guarded_streams() as (out, _err), stop_signals_as_interrupts() as received:
        code = _dispatch(argv)
        if code == EXIT_INTERRUPTED and received:  # the command kept its work; the exit names the signal
            sys.stderr.write(f"levit-bench: stopped by {signal_name(received[0])}\n")
            code = 128 + received[0]
        out.flush()  # a full disk says so only now
        return output_exit_code(code, out)


def _dispatch(argv: list[str]) -> int:
    problem = working_directory_problem()
    if problem:
        sys.stderr.write(f"levit-bench: error: {problem}\n")
        return EXIT_BAD_INPUT
    allocator.steady()  # before any model allocates: every process of a run reuses its heap alike
    try:
        with preserved_environment():
            return _run(argv)
    except UserError as exc:
        sys.stderr.write(f"levit-bench: error: {exc}\n")
        return EXIT_BAD_INPUT
    except Terminated as exc:
        sys.stderr.write(f"levit-bench: stopped by {signal_name(exc.signum)}\n")
        return 128 + exc.signum
    except KeyboardInterrupt:
        sys.stderr.write("levit-bench: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # an allocator's refusal outside any entry's guard (a model built up front, a GEMM)
        if not is_out_of_memory(exc):
            raise
        sys.stderr.write(f"levit-bench: error: out of memory: {first_line(exc, 200)} (a smaller --batch-size, "
                         "--img-size or --size fits)\n")
        return EXIT_BAD_INPUT


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _run(argv: list[str]) -> int:
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        if argv and not argv[0].startswith("-"):
            if argv[0].lower().endswith(".toml"):
                raise UserError(f"a plan file runs with `levit-bench run {argv[0]}` (or `levit-bench plan {argv[0]}` "
                                "to see it expanded)")
            raise UserError(f"unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)}; or options to measure)")
        return cmd_run(argv)
    except SystemExit as exc:  # argparse: --help, --version, bad arguments
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)


assert tuple(COMMANDS) == COMMAND_NAMES, "cli/args.py COMMAND_NAMES lists every command, in order"

__all__ = ["COMMANDS", "main"]
