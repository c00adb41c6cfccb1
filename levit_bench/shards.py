"""Shards of a plan (issue 23): the groups no shard may split, the deterministic split balanced by
estimated cost, the shard index from a flag or an engine's own variables, and what a set of shards
still lacks.

A *group* is the set of entries a paired ratio needs in one run (timed in the same rounds, so the
machine's drift cancels, and on the same machine): the report's "× torch" (every runtime beside
torch on the same model, precision and batch), the int8 twin of an fp32 entry (same model, runtime,
batch), the paper's LeViT/EfficientNet headline pairs (same runtime, precision, batch), and, where
the plan names one, the ``normalize_by`` reference with every entry it normalizes (same precision
and batch).  Groups are joined transitively (union-find), so overlapping rules make one group.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from . import paper
from .errors import UserError
from .plan import PlanEntry
from .spec import BASELINE_BACKEND

#: ``LEVIT_BENCH_SHARD=I/N`` (a CI matrix sets it), or ``auto``: read the engine's variables
SHARD_ENV = "LEVIT_BENCH_SHARD"
#: the shard count where the engine gives an index only (Kubernetes' ``JOB_COMPLETION_INDEX``)
SHARD_COUNT_ENV = "LEVIT_BENCH_SHARD_COUNT"


class _Union:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def groups(entries: Sequence[PlanEntry], normalize_by: tuple[str, str] | None = None) -> list[list[int]]:
    """The entries (indices into ``entries``) no shard may split, each group in plan order, the
    groups ordered by their first entry."""
    at = {e: i for i, e in enumerate(entries)}
    u = _Union(len(entries))
    pairs = {a: b for a, b in paper.HEADLINE_PAIRS} | {b: a for a, b in paper.HEADLINE_PAIRS}
    for i, e in enumerate(entries):
        twins = [PlanEntry(e.model, e.precision, BASELINE_BACKEND, e.batch_size)]  # × torch
        if e.precision == "int8":
            twins.append(PlanEntry(e.model, "fp32", e.backend, e.batch_size))
        if e.model in pairs:
            twins.append(PlanEntry(pairs[e.model], e.precision, e.backend, e.batch_size))
        if normalize_by is not None:
            twins.append(PlanEntry(normalize_by[0], e.precision, normalize_by[1], e.batch_size))
        for t in twins:
            if t in at:
                u.join(i, at[t])
    by_root: dict[int, list[int]] = {}
    for i in range(len(entries)):
        by_root.setdefault(u.find(i), []).append(i)
    return sorted(by_root.values(), key=lambda g: g[0])


def check_reference(entries: Sequence[PlanEntry], normalize_by: tuple[str, str]) -> None:
    """A UserError unless the plan measures the reference at every precision and batch it has."""
    model, backend = normalize_by
    have = {(e.precision, e.batch_size) for e in entries if (e.model, e.backend) == (model, backend)}
    lacking = sorted({(e.precision, e.batch_size) for e in entries} - have)
    if lacking:
        p, bs = lacking[0]
        raise UserError(f"normalize_by {model}/{backend}: the plan does not measure it at {p}, batch {bs} "
                        "(add it to models and backends, or drop normalize_by)")


def split(cost: Sequence[float], group_list: Sequence[Sequence[int]], count: int) -> list[int]:
    """The shard of each entry: groups placed greedily, largest estimated cost first (ties: plan
    order), each on the shard with the least cost so far (ties: the lowest index).  Deterministic:
    the same plan splits the same way on every machine."""
    if count < 1:
        raise ValueError("a plan splits into at least one shard")
    load = [0.0] * count
    shard = [0] * len(cost)
    weights = [(sum(cost[i] for i in g), n) for n, g in enumerate(group_list)]
    for total, n in sorted(weights, key=lambda w: (-w[0], w[1])):
        target = min(range(count), key=lambda s: (load[s], s))
        load[target] += total
        for i in group_list[n]:
            shard[i] = target
    return shard


def parse_shard(text: str, source: str = "--shard") -> tuple[int, int]:
    """``I/N`` -> (I, N), zero-based: 0 ≤ I < N; a one-line UserError for anything else."""
    index, slash, count = text.strip().partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise UserError(f"{source} {text!r}: expected I/N, a zero-based index and a count, e.g. 0/3") from None
    if not slash or n < 1:
        raise UserError(f"{source} {text!r}: expected I/N with N ≥ 1, e.g. 0/3")
    if not 0 <= i < n:
        raise UserError(f"{source} {text!r}: shard index {i} is out of range (0 to {n - 1} for {n} shards)")
    return i, n


def shard_from_engine(env: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``--shard auto``: the index and count from ``LEVIT_BENCH_SHARD=I/N``, else a Slurm array job
    (``SLURM_ARRAY_TASK_ID`` less ``SLURM_ARRAY_TASK_MIN``, of ``SLURM_ARRAY_TASK_COUNT``), else a
    Kubernetes indexed Job (``JOB_COMPLETION_INDEX`` of ``LEVIT_BENCH_SHARD_COUNT``)."""
    given = env.get(SHARD_ENV, "").strip()
    if given and given != "auto":
        return parse_shard(given, SHARD_ENV)
    if "SLURM_ARRAY_TASK_ID" in env:
        try:
            task, first = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError):
            raise UserError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT (or _MIN) is "
                            "missing or not an integer") from None
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
        return parse_shard(f"{(task - first) // step}/{count}", "Slurm array task")
    if "JOB_COMPLETION_INDEX" in env:
        if SHARD_COUNT_ENV not in env:
            raise UserError(f"--shard auto: JOB_COMPLETION_INDEX is set; set {SHARD_COUNT_ENV} to the Job's "
                            "completions (Kubernetes does not expose it)")
        return parse_shard(f"{env['JOB_COMPLETION_INDEX']}/{env[SHARD_COUNT_ENV]}", "JOB_COMPLETION_INDEX")
    raise UserError(f"--shard auto: none of {SHARD_ENV}, SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX is set "
                    "(run inside an array job, or give --shard I/N)")


def resolve_shard(flag: str | None, env: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """The shard this run takes: ``--shard I/N`` or ``--shard auto``; without the flag,
    ``LEVIT_BENCH_SHARD`` where set (I/N or auto); None: the whole plan."""
    text = flag if flag is not None else env.get(SHARD_ENV, "").strip() or None
    if text is None:
        return None
    if text.strip() == "auto":
        return shard_from_engine(env)
    return parse_shard(text, "--shard" if flag is not None else SHARD_ENV)


def missing_by_shard(assignment: Sequence[int], done: Mapping[int, set[int]]) -> dict[int, list[int]]:
    """Per shard, the entries (indices) not among ``done[shard]`` (a shard absent: all of its entries)."""
    out: dict[int, list[int]] = {}
    for i, s in enumerate(assignment):
        if i not in done.get(s, set()):
            out.setdefault(s, []).append(i)
    return out
