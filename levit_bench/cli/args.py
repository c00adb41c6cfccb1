"""Argument types and validators shared by every command, and the exit codes.

Every bad value is refused here, in one line, before anything is measured or written.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

#: every subcommand, in the order help texts list them (``cli/__init__.py`` maps each to its module)
COMMAND_NAMES = ("run", "list", "sysinfo", "report", "compare", "cache", "accuracy", "profile", "ab", "load", "history",
                 "plan", "merge")

#: the longest --warmup / --min-time accepted: a typo of an hour is refused, not waited for
MAX_SECONDS = 3600.0


class Parser(argparse.ArgumentParser):
    """argparse that says what is wrong in one line and exits 2 (never a traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"levit-bench: error: {message}\n")


def positive_int(option: str, maximum: int | None = None, minimum: int = 1) -> Callable[[str], int]:
    """An integer in [minimum, maximum]: a value past the bound is refused, never capped silently."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum or str(value) != text.strip().lstrip("+"):
            kind = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
            raise argparse.ArgumentTypeError(f"{option} must be {kind}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{option} must be at most {maximum:,}, got {text!r}")
        return value

    return parse


def int_list(option: str) -> Callable[[str], list[int]]:
    one = positive_int(option)
    return lambda text: [one(t) for t in text.split(",") if t.strip()] or [one("")]


def seconds(option: str, allow_zero: bool, maximum: float = MAX_SECONDS) -> Callable[[str], float]:
    """A finite number of seconds in [0 or >0, maximum]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be a number of seconds, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{option} must be {'≥' if allow_zero else '>'} 0 seconds, got {text!r}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{option} must be at most {maximum:g} seconds, got {text!r}")
        return value

    return parse


def percent(option: str, allow_zero: bool = True) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.rstrip("%"))
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
            raise argparse.ArgumentTypeError(f"{option} must be a percentage {'≥' if allow_zero else '>'} 0, "
                                             f"got {text!r}")
        return value

    return parse


def probability(option: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"{option} must be between 0 and 1, got {text!r}")
        return value

    return parse


def names(option: str) -> Callable[[str], list[str]]:
    """A comma list of names; an empty one is refused (it would measure nothing)."""
    def parse(text: str) -> list[str]:
        out = [t.strip() for t in text.split(",") if t.strip()]
        if not out:
            raise argparse.ArgumentTypeError(f"{option} needs at least one name, got {text!r}")
        return out

    return parse


# ---------------------------------------------------------------------------------------------
# levit-bench load (issue 22)


def positive_number(option: str, allow_zero: bool = False, unit: str = "") -> Callable[[str], float]:
    """A finite number > 0 (≥ 0 with ``allow_zero``): a rate, an SLO, a delay."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{option} must be a number {'≥' if allow_zero else '>'} 0{unit}, "
                                             f"got {text!r}")
        return value

    return parse


def number_list(option: str, unit: str = "") -> Callable[[str], list[float]]:
    """A comma list of numbers > 0 (``--rate 50,100,200``)."""
    one = positive_number(option, unit=unit)
    return lambda text: [one(t) for t in text.split(",") if t.strip()] or [one("")]
