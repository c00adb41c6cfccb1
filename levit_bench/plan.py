"""Plan files (issue 23): a TOML file that names what to measure and how to time it, its expanded
entries, the canonical form and hash every shard, resumed run and merge compares, and each entry's
estimated cost.

The keys of a plan file are the flags of ``levit-bench run`` (``cli/planfile.py`` reads them off the
parser, so a new flag is a new key without an edit here); this module knows the file's shape (its
tables and line numbers), the sweep's ``exclude`` rules, and nothing of argparse.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .errors import UserError

#: the tables a plan file may hold: what to measure, and how to time it
TABLES = ("plan", "timing", "input")
#: what an ``exclude`` rule may name (each a value or a list; models may be globs)
EXCLUDE_KEYS = ("model", "backend", "precision", "batch_size")
#: how much slower (>1) or faster (<1) than eager torch a runtime is expected to run a call: only
#: to balance shards (a guess per runtime, not a measurement; a wrong guess unbalances, never splits a pair)
BACKEND_FACTOR = {"torch": 1.0, "torchscript": 0.9, "torch-compile": 0.8, "onnxruntime": 0.8, "openvino": 0.7}
#: the same for precisions (int8: about half the time of fp32 where a runtime has int8 kernels)
PRECISION_FACTOR = {"fp32": 1.0, "fp16": 0.6, "bf16": 0.6, "int8": 0.5}


class PlanEntry(NamedTuple):
    """One step of a plan: what ``Selection.steps()`` yields, without the settings."""

    model: str
    precision: str
    backend: str
    batch_size: int

    def label(self) -> str:
        return f"{self.model} / {self.backend} / {self.precision} / batch {self.batch_size}"


def read_toml(path: str | Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text (for line numbers); a one-line UserError where it cannot be read."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UserError("plan files need Python 3.11 (tomllib) or the tomli package") from None
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"plan file {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"plan file {p}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"plan file {p}: not valid TOML: {exc}") from None
    for name in data:
        if name not in TABLES or not isinstance(data[name], dict):
            where = key_line(text, None, name)
            raise UserError(f"{p}:{where or '?'}: unknown table or key {name!r} (a plan file has the tables "
                            f"{', '.join(f'[{t}]' for t in TABLES)})")
    return data, text


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")


def key_line(text: str, table: str | None, key: str) -> int | None:
    """The 1-based line where ``key`` is set inside ``[table]`` (or its sub-tables, ``[[plan.exclude]]``;
    None: at the top, before any table); None where it is not found.  tomllib gives no positions
    for keys, so the text is searched."""
    current: str | None = None
    pattern = re.compile(r"""^\s*(?:["']?)""" + re.escape(key) + r"""(?:["']?)\s*=""")
    inline = re.compile(r"""[{,]\s*(?:["']?)""" + re.escape(key) + r"""(?:["']?)\s*=""")
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header and not line.strip().startswith(("[\"", "['")) and "=" not in line:
            current = header.group(1).replace('"', "").replace("'", "").strip()
            if table is None and current == key:
                return number
            continue
        inside = current is None if table is None else (current == table or (current or "").startswith(table + "."))
        if inside and (pattern.match(line) or (table is not None and inline.search(line))):
            return number
    return None


def where(path: str | Path, text: str, table: str | None, key: str) -> str:
    """``FILE:LINE: [table] key`` for a message about ``key``."""
    line = key_line(text, table, key)
    return f"{path}:{line or '?'}: " + (f"[{table}] " if table else "") + key


# ---------------------------------------------------------------------------------------------
# exclude rules


def check_excludes(rules: Any, path: str | Path, text: str) -> list[dict[str, list]]:
    """``[plan] exclude`` as a list of rules, each key a list of values; a UserError with the line
    for anything else (an unknown key, a value of the wrong type, an empty rule)."""
    at = where(path, text, "plan", "exclude")
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise UserError(f"{at}: must be a list of tables, e.g. exclude = [{{model = \"deit_*\", backend = \"openvino\"}}]")
    out = []
    for rule in rules:
        if not rule:
            raise UserError(f"{at}: an empty rule would exclude everything")
        clean: dict[str, list] = {}
        for k, v in rule.items():
            if k not in EXCLUDE_KEYS:
                raise UserError(f"{where(path, text, 'plan', k)}: unknown key {k!r} in an exclude rule "
                                f"(choose from {', '.join(EXCLUDE_KEYS)})")
            values = v if isinstance(v, list) else [v]
            want = int if k == "batch_size" else str
            if not values or any(type(x) is not want for x in values):
                raise UserError(f"{where(path, text, 'plan', k)}: an exclude rule's {k} must be "
                                f"{'an integer' if want is int else 'a string'} or a list of them, got {v!r}")
            clean[k] = values
        out.append(clean)
    return out


def excluded(entry: PlanEntry, rules: Sequence[dict[str, list]]) -> bool:
    """Whether some rule matches ``entry`` (every key of the rule matches; models by glob)."""
    def matches(rule: dict[str, list]) -> bool:
        return all(any(fnmatch.fnmatchcase(str(getattr(entry, k)), str(v)) if k == "model" else getattr(entry, k) == v
                       for v in values) for k, values in rule.items())

    return any(matches(r) for r in rules)


def expand(steps: Iterable[tuple[str, Any, str, int]], rules: Sequence[dict[str, list]] = ()) -> list[PlanEntry]:
    """The plan's entries in plan order (``Selection.steps()``: model, settings, backend, batch),
    less those an exclude rule matches."""
    entries = [PlanEntry(m, s.precision, b, bs) for m, s, b, bs in steps]
    return [e for e in entries if not excluded(e, rules)]


# ---------------------------------------------------------------------------------------------
# the canonical plan and its hash


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def plan_hash(canonical: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the resolved plan: equal for every shard and resumption of one
    plan, on any machine (the plan holds what was asked, not what a machine resolved it to)."""
    return hashlib.sha256(canonical_json(canonical).encode()).hexdigest()


def entry_dicts(entries: Iterable[PlanEntry]) -> list[dict[str, Any]]:
    return [e._asdict() for e in entries]


def entries_of(canonical: dict[str, Any]) -> list[PlanEntry]:
    """The entries a recorded plan (``config.plan.plan``) expands to."""
    return [PlanEntry(d["model"], d["precision"], d["backend"], int(d["batch_size"])) for d in canonical["entries"]]


# ---------------------------------------------------------------------------------------------
# estimated cost (to balance shards; shown by ``levit-bench plan``)


def model_macs(model: str, img_size: int | None = None) -> int | None:
    """Multiply-accumulates per image: the zoo's published figure (scaled by the pixels of an
    ``img_size`` override), else counted (``opcount``, on torch's meta device); None where neither."""
    from . import zoo

    try:
        spec = zoo.model_spec(model)
    except UserError:
        spec = None
    if spec is not None and spec.published is not None and spec.published.flops_m:
        scale = (img_size / spec.img_size) ** 2 if img_size else 1.0
        return int(spec.published.flops_m * 1e6 * scale)
    from .opcount import model_ops

    try:
        return model_ops(model, img_size).macs
    except Exception:  # noqa: BLE001 - a model the counter cannot build or trace: no estimate
        return None


def entry_cost(entry: PlanEntry, macs: int | None) -> float:
    """GMAC per call × the runtime's and precision's factors (1 GMAC where the MACs are unknown)."""
    gmac = (macs if macs else 1e9) / 1e9
    return gmac * entry.batch_size * BACKEND_FACTOR.get(entry.backend, 1.0) * PRECISION_FACTOR.get(entry.precision, 1.0)


def costs(entries: Sequence[PlanEntry], img_size: int | None = None) -> list[float]:
    macs = {m: model_macs(m, img_size) for m in dict.fromkeys(e.model for e in entries)}
    return [entry_cost(e, macs[e.model]) for e in entries]
