"""Plan files, shards and merge (issue 23): expansion, hashing, splitting and matching as pure logic
(no timing), and the command line's refusals (exit 2, one line).  The runs: tests/test_fleet.py."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from levit_bench import paper, results, shards
from levit_bench.cli import main
from levit_bench.cli import planfile
from levit_bench.cli.run import run_parser
from levit_bench.errors import UserError
from levit_bench.plan import PlanEntry, costs, entry_dicts, expand, key_line, plan_hash
from levit_bench.shard_merge import merge_shards

from .test_gate import SYSTEM, make_record, ok_entry

PLAN = """\
# a small sweep
[plan]
models = ["levit_128s", "levit_128", "levit_192"]
backends = ["torch", "onnxruntime"]
batch_sizes = [1, 2]
threads = 1

[timing]
min_time = 0.05
warmup = 0
rounds = 1
"""


def write(tmp_path, text: str, name: str = "plan.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def plan_json(capsys, *argv: str) -> dict:
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def refused(capsys, argv: list[str]) -> str:
    """The one line a refused command prints (exit 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("levit-bench: error:"), err
    assert "Traceback" not in err[0]
    return err[0]


# ---------------------------------------------------------------------------------------------
# the file: keys follow the flags, flags override it


def test_plan_file_values_land_on_the_flags_and_the_command_line_overrides_them(tmp_path):
    p = write(tmp_path, PLAN.replace("threads = 1", "threads = 1\nchannels_last = true") + "seed = 7\n")
    args = planfile.parse(run_parser, [str(p)])
    assert args.model == [["levit_128s"], ["levit_128"], ["levit_192"]] and args.batch_size == [[1], [2]]
    assert (args.threads, args.min_time, args.warmup, args.rounds, args.seed) == (1, 0.05, 0.0, 1, 7)
    assert args.channels_last is True
    over = planfile.parse(run_parser, [str(p), "--model", "levit_256", "--min-time", "3", "--threads", "2"])
    assert over.model == [["levit_256"]] and over.min_time == 3.0 and over.threads == 2
    assert over.backend == [["torch"], ["onnxruntime"]]  # not given: the file's
    # an explicit flag equal to the parser's default still wins over the file
    assert planfile.parse(run_parser, [str(p), "--min-time", "2"]).min_time == 2.0


def test_every_flag_of_the_selection_and_timing_groups_is_a_key():
    keys = planfile.file_keys(run_parser())
    for name in ("models", "backends", "batch_sizes", "precisions", "threads", "device", "img_size", "weights",
                 "channels_last", "compile_mode", "openvino_mode", "calibration", "paper", "normalize_by", "chunk"):
        assert name in keys["plan"], name
    from levit_bench.spec import RuntimeOptions

    assert {n for n, _d, _i in RuntimeOptions.declared()} <= set(keys["plan"])
    assert {"warmup", "min_time", "min_calls", "rounds", "seed", "target_ci", "max_time", "processes"} <= set(keys["timing"])
    assert not {"shard", "resume", "plan_file", "out"} & (set(keys["plan"]) | set(keys["timing"]))


def test_key_line_finds_keys_in_their_table_and_inline_tables():
    text = '[plan]\nmodels = ["a"]\nexclude = [{model = "x", colour = "red"}]\n\n[timing]\nmodels = 3\n'
    assert key_line(text, "plan", "models") == 2
    assert key_line(text, "timing", "models") == 6
    assert key_line(text, "plan", "colour") == 3
    assert key_line(text, "plan", "absent") is None


@pytest.mark.parametrize("body, words", [
    (PLAN + "colour = 3\n", ["plan.toml:", "[timing] colour", "unknown key"]),
    (PLAN.replace("threads = 1", "threads = 1\nmin_time = 2"), [":7: [plan] min_time", "belongs in [timing]"]),
    (PLAN.replace('"levit_192"', '"levit_999"'), [":3: [plan] models", "levit_999"]),
    (PLAN.replace('["torch", "onnxruntime"]', "[]"), [":4: [plan] backends", "empty"]),
    (PLAN.replace("[1, 2]", '["one"]'), [":5: [plan] batch_sizes", "positive integer"]),
    (PLAN.replace("threads = 1", "threads = true"), [":6: [plan] threads", "not a value"]),
    (PLAN.replace("rounds = 1", "rounds = 0"), [":11: [timing] rounds", "positive integer"]),
    (PLAN + "[plan.extra]\n", ["unknown key"]),
    (PLAN.replace("[timing]", "[timings]"), ["unknown table", "timings"]),
    (PLAN.replace("threads = 1", "threads = 1\nexclude = [{model = \"levit_*\"}]"), ["plan is empty"]),
    (PLAN.replace("threads = 1", "threads = 1\nexclude = [{modle = \"levit_*\"}]"), [":7: [plan] modle", "exclude"]),
    (PLAN.replace("models = [", "models = ["), []),
    ("[plan\nmodels = 1", ["not valid TOML", "line 1"]),
])
def test_bad_plan_files_exit_2_with_one_line_naming_key_and_line(tmp_path, capsys, body, words):
    p = write(tmp_path, body)
    if not words:  # the control: the file itself is good
        assert plan_json(capsys, str(p))["count"] == 12
        return
    for command in (["plan"], ["run"]):
        line = refused(capsys, [*command, str(p), "--out", str(tmp_path / "out.json")] if command == ["run"]
                       else [*command, str(p)])
        for w in words:
            assert w in line, line
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("shard, words", [("3/3", "out of range"), ("-1/3", "out of range"), ("1/0", "N ≥ 1"),
                                          ("x", "expected I/N")])
def test_a_shard_out_of_range_exits_2(tmp_path, capsys, shard, words):
    line = refused(capsys, ["plan", str(write(tmp_path, PLAN)), f"--shard={shard}"])
    assert words in line and "--shard" in line


def test_a_missing_plan_file_and_a_normalize_by_reference_the_plan_lacks_exit_2(tmp_path, capsys):
    assert "no such file" in refused(capsys, ["plan", str(tmp_path / "nope.toml")])
    line = refused(capsys, ["plan", str(write(tmp_path, PLAN)), "--normalize-by", "levit_256/torch"])
    assert "normalize_by levit_256/torch" in line


def test_normalize_by_plan_needs_no_reference_entry_and_changes_the_plan_hash(tmp_path, capsys):
    path = str(write(tmp_path, PLAN))
    plain, plan_wide = plan_json(capsys, path), plan_json(capsys, path, "--normalize-by", "plan")
    assert plan_wide["count"] == plain["count"] and plan_wide["hash"] != plain["hash"]


# ---------------------------------------------------------------------------------------------
# expansion and hash


def test_the_plan_expands_in_plan_order_less_its_exclude_rules(tmp_path, capsys):
    full = plan_json(capsys, str(write(tmp_path, PLAN)))
    assert full["count"] == 12
    assert [(e["model"], e["backend"], e["batch_size"]) for e in full["entries"][:4]] == [
        ("levit_128s", "torch", 1), ("levit_128s", "torch", 2), ("levit_128s", "onnxruntime", 1),
        ("levit_128s", "onnxruntime", 2)]
    rule = 'exclude = [{model = "levit_1*", backend = "onnxruntime", batch_size = 2}]'
    cut = plan_json(capsys, str(write(tmp_path, PLAN.replace("threads = 1", "threads = 1\n" + rule), "cut.toml")))
    assert cut["count"] == 9 and cut["hash"] != full["hash"]
    assert not any(e["backend"] == "onnxruntime" and e["batch_size"] == 2 for e in cut["entries"])


def test_the_hash_is_of_the_resolved_plan_not_its_spelling_or_shard(tmp_path, capsys):
    h = plan_json(capsys, str(write(tmp_path, PLAN)))["hash"]
    spelled = PLAN.replace('["levit_128s", "levit_128", "levit_192"]', '"levit_128s"').replace(
        "threads = 1", 'threads = 1\n# the same models by another name\n') + ""
    flags = plan_json(capsys, str(write(tmp_path, spelled, "b.toml")), "--model", "levit_128s,levit_128,levit_192")
    assert flags["hash"] == h
    assert all(plan_json(capsys, str(write(tmp_path, PLAN)), "--shard", f"{i}/3")["hash"] == h for i in range(3))
    assert plan_json(capsys, str(write(tmp_path, PLAN)), "--min-time", "0.1")["hash"] != h
    canonical = {"entries": entry_dicts([PlanEntry("a", "fp32", "torch", 1)]), "x": {"b": 1, "a": 2}}
    assert plan_hash(canonical) == plan_hash({"x": {"a": 2, "b": 1}, "entries": canonical["entries"]})
    assert plan_hash(canonical) != plan_hash({**canonical, "x": {"b": 2, "a": 1}})


def test_costs_follow_published_macs_batch_and_runtime():
    a, b, c = costs([PlanEntry("levit_128s", "fp32", "torch", 1), PlanEntry("levit_128s", "fp32", "torch", 4),
                     PlanEntry("levit_256", "fp32", "openvino", 1)])
    assert b == pytest.approx(4 * a)
    assert c == pytest.approx(a * 1120 / 305 * 0.7)


# ---------------------------------------------------------------------------------------------
# groups and the split


def entries(models, backends=("torch", "onnxruntime"), precisions=("fp32",), batches=(1, 2)) -> list[PlanEntry]:
    return [PlanEntry(m, p, b, bs) for m in models for p in precisions for b in backends for bs in batches]


def test_paired_entries_are_one_group():
    es = entries(["levit_128s", "levit_256", "efficientnet_b0"], precisions=("fp32", "int8"))
    found = shards.groups(es)
    group_of = {es[i]: n for n, g in enumerate(found) for i in g}
    for e in es:
        assert group_of[e] == group_of[PlanEntry(e.model, e.precision, "torch", e.batch_size)]  # × torch
        if e.precision == "int8":
            assert group_of[e] == group_of[PlanEntry(e.model, "fp32", e.backend, e.batch_size)]  # int8 twin
    pair = paper.HEADLINE_PAIRS[0]
    assert group_of[PlanEntry(pair[0], "fp32", "torch", 1)] == group_of[PlanEntry(pair[1], "fp32", "torch", 1)]
    assert group_of[PlanEntry("levit_256", "fp32", "torch", 1)] != group_of[PlanEntry("levit_256", "fp32", "torch", 2)]
    assert group_of[PlanEntry("levit_256", "fp32", "torch", 1)] != group_of[PlanEntry("levit_128s", "fp32", "torch", 1)]
    with_ref = shards.groups(es, ("levit_256", "onnxruntime"))
    ref_of = {es[i]: n for n, g in enumerate(with_ref) for i in g}
    assert len({ref_of[e] for e in es if e.batch_size == 1}) == 1  # everything at batch 1 beside its reference
    assert ref_of[PlanEntry("levit_128s", "fp32", "torch", 1)] != ref_of[PlanEntry("levit_128s", "fp32", "torch", 2)]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 40])
def test_the_split_never_splits_a_group_covers_the_plan_and_is_balanced(count):
    rng = np.random.default_rng(count)
    es = entries(["levit_128s", "levit_128", "levit_192", "levit_256", "efficientnet_b0", "efficientnet_b3",
                  "deit_tiny"], backends=("torch", "onnxruntime", "openvino"), precisions=("fp32", "int8"),
                 batches=(1, 4, 16))
    cost = list(rng.lognormal(0, 1, len(es)))
    found = shards.groups(es)
    assignment = shards.split(cost, found, count)
    assert assignment == shards.split(cost, found, count)  # deterministic
    for g in found:
        assert len({assignment[i] for i in g}) == 1
    assert set(assignment) <= set(range(count)) and len(assignment) == len(es)
    load = [sum(c for c, a in zip(cost, assignment) if a == s) for s in range(count)]
    biggest = max(sum(cost[i] for i in g) for g in found)
    assert max(load) - min(load) <= biggest + 1e-9  # greedy LPT: no shard over the lightest by more than a group


def test_the_shard_comes_from_the_flag_or_the_engines_variables():
    assert shards.resolve_shard("1/3", {}) == (1, 3)
    assert shards.resolve_shard(None, {}) is None
    assert shards.resolve_shard(None, {"LEVIT_BENCH_SHARD": "2/4"}) == (2, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert shards.resolve_shard("auto", slurm) == (1, 3)
    assert shards.resolve_shard(None, {**slurm, "LEVIT_BENCH_SHARD": "auto"}) == (1, 3)
    assert shards.resolve_shard("auto", {"JOB_COMPLETION_INDEX": "0", "LEVIT_BENCH_SHARD_COUNT": "2"}) == (0, 2)
    for env, words in (({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3"}, "out of range"),
                       ({"JOB_COMPLETION_INDEX": "0"}, "LEVIT_BENCH_SHARD_COUNT"), ({}, "none of")):
        with pytest.raises(UserError, match=words):
            shards.resolve_shard("auto", env)


def test_shards_by_flag_and_by_slurm_variables_take_the_same_entries(tmp_path, capsys, monkeypatch):
    p = str(write(tmp_path, PLAN))
    by_flag = [plan_json(capsys, p, "--shard", f"{i}/3") for i in range(3)]
    mine = [[e["index"] for e in v["entries"] if e["shard"] == i] for i, v in enumerate(by_flag)]
    assert sorted(i for m in mine for i in m) == list(range(12)) and all(mine)
    for i in range(3):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(i))
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
        slurm = plan_json(capsys, p, "--shard", "auto")
        assert slurm["shard"] == {"index": i, "count": 3} and slurm["entries"] == by_flag[i]["entries"]


# ---------------------------------------------------------------------------------------------
# merge, on records with known entries (no timing)


def shard_records(tmp_path, plan_entries: list[PlanEntry], count: int, drop: set[int] = frozenset(),
                  system: dict | None = None) -> list[results.RunRecord]:
    """One saved record per shard of ``plan_entries`` (split by ``shards.split``), entries with
    simulated samples, less the entries ``drop`` names."""
    assignment = shards.split([1.0] * len(plan_entries), shards.groups(plan_entries), count)
    canonical = {"format": 1, "entries": entry_dicts(plan_entries)}
    h = plan_hash(canonical)
    rng = np.random.default_rng(0)
    out = []
    for s in range(count):
        es = [ok_entry(e.model, e.backend, e.batch_size, rng.lognormal(-4, 0.05, 8))
              for i, (e, a) in enumerate(zip(plan_entries, assignment)) if a == s and i not in drop]
        for e in es:
            e.group = 0
        rec = make_record(es, system)
        rec.config["plan"] = {"hash": h, "plan": canonical, "shard": {"index": s, "count": count},
                              "assignment": assignment}
        path = tmp_path / f"shard-{s}.json"
        rec.save(path)
        out.append(results.load(path))
    return out


def test_merge_joins_complete_shards_in_plan_order_with_groups_kept_apart(tmp_path, capsys):
    es = entries(["levit_128s", "levit_128", "levit_192"])
    recs = shard_records(tmp_path, es, 3)
    merged = merge_shards(list(reversed(recs)))
    assert [(e.model, e.precision, e.backend, e.batch_size) for e in merged.results] == [tuple(e) for e in es]
    assert merged.complete and merged.config["plan"]["hash"] == recs[0].config["plan"]["hash"]
    shard_of = {(e.model, e.backend, e.batch_size): s for s, r in enumerate(recs) for e in r.results}
    groups = {}
    for e in merged.results:
        groups.setdefault(e.group, set()).add(shard_of[(e.model, e.backend, e.batch_size)])
    assert all(len(s) == 1 for s in groups.values()) and len(groups) == 3  # one group number per shard
    out = tmp_path / "merged.json"
    assert main(["merge", *(r.source for r in recs), "-o", str(out)]) == 0
    assert len(results.load(out).results) == 12
    assert "exists" in refused(capsys, ["merge", *(r.source for r in recs), "-o", str(out)])  # never unasked
    assert main(["merge", *(r.source for r in recs), "-o", str(out), "--force"]) == 0


def test_merge_of_an_incomplete_set_lists_what_is_missing_by_shard(tmp_path, capsys):
    es = entries(["levit_128s", "levit_128", "levit_192"])
    recs = shard_records(tmp_path, es, 3, drop={0})
    line = refused(capsys, ["merge", recs[0].source, recs[1].source, "-o", str(tmp_path / "m.json")])
    lost = [s for s in range(3) if not any(
        (e.model, e.backend, e.batch_size) == ("levit_128s", "torch", 1) for e in recs[s].results)]
    assert "do not complete the plan" in line and "shard 2/3 (no file)" in line
    assert "levit_128s / torch / fp32 / batch 1" in line
    assert lost and not (tmp_path / "m.json").exists()


def test_merge_refuses_mixed_plans_a_shard_twice_and_another_machine(tmp_path, capsys):
    for d in "abc":
        (tmp_path / d).mkdir()
    a = shard_records(tmp_path / "a", entries(["levit_128s"]), 2)
    b = shard_records(tmp_path / "b", entries(["levit_128"]), 2)
    assert "different plans" in refused(capsys, ["merge", a[0].source, b[1].source, "-o", str(tmp_path / "m.json")])
    other = copy.deepcopy(SYSTEM)
    other["cpu"] = "Another CPU"
    c = shard_records(tmp_path / "c", entries(["levit_128s"]), 2, system=other)
    line = refused(capsys, ["merge", a[0].source, c[1].source, "-o", str(tmp_path / "m.json")])
    assert "different machines" in line and "Another CPU" in line
    twice = copy.deepcopy(a[0])
    twice.source = "copy.json"
    with pytest.raises(UserError, match="given twice"):
        merge_shards([a[0], twice, a[1]])
    bare = make_record([])
    bare.source = "old.json"
    with pytest.raises(UserError, match="records no plan"):
        merge_shards([bare])


# ---------------------------------------------------------------------------------------------
# resume: refused before anything is measured when the file is not this plan's on this machine


def test_resume_refuses_another_plan_another_machine_and_out(tmp_path, capsys):
    from levit_bench import sysinfo

    p = write(tmp_path, PLAN)
    view = plan_json(capsys, str(p))
    rec = make_record([], sysinfo.collect())
    rec.config["plan"] = {"hash": "0" * 64, "plan": view["plan"], "shard": None}
    old = tmp_path / "old.json"
    rec.save(old)
    line = refused(capsys, ["run", str(p), "--resume", str(old)])
    assert "cannot resume" in line and f"plan {'0' * 12} vs {view['hash'][:12]}" in line
    rec.config["plan"]["hash"] = view["hash"]
    rec.system["cpu"] = "Another CPU"
    rec.save(old)
    line = refused(capsys, ["run", str(p), "--resume", str(old), "--shard", "1/3"])
    assert "Another CPU" in line and "shard the whole plan vs 1/3" in line
    assert "drop --out" in refused(capsys, ["run", str(p), "--resume", str(old), "--out", str(tmp_path / "x.json")])
    assert "no such results file" in refused(capsys, ["run", str(p), "--resume", str(tmp_path / "none.json")])
    bare = make_record([], sysinfo.collect())
    bare.save(old)
    assert "records no plan" in refused(capsys, ["run", str(p), "--resume", str(old)])
    assert json.loads(old.read_text())["config"] == bare.config  # left as it was


def test_chunks_are_whole_groups_of_the_shard_in_plan_order(tmp_path):
    from levit_bench.cli.front import resolve

    p = write(tmp_path, PLAN)
    args = planfile.parse(run_parser, [str(p), "--chunk", "3", "--shard", "1/2"])
    fleet = planfile.resolve_fleet(args, resolve(args), env={})
    chunks = fleet.chunks(args.chunk)
    mine = {tuple(fleet.entries[i]) for i in fleet.mine()}
    assert set().union(*chunks) == mine and sum(map(len, chunks)) == len(mine)
    assert all(len(c) >= 3 for c in chunks[:-1])
    for g in fleet.groups:
        members = {tuple(fleet.entries[i]) for i in g}
        assert sum(1 for c in chunks if members & c) <= 1 and (not members & mine or members <= mine)
    assert fleet.selection.count() == len(mine) and fleet.chunks(None) is None
    assert {(m, s.precision, b, bs) for m, s, b, bs in fleet.selection.steps()} == mine


def test_the_input_flags_are_an_input_table_and_part_of_the_hash(tmp_path, capsys):
    keys = planfile.file_keys(run_parser())
    assert {"input", "decoder", "decode_threads"} <= set(keys["input"])
    plain = plan_json(capsys, str(write(tmp_path, PLAN)))
    jpeg = plan_json(capsys, str(write(tmp_path, PLAN + '\n[input]\ninput = "jpeg"\ndecode_threads = [1]\n', "j.toml")))
    assert jpeg["plan"]["input"]["input"] == "jpeg" and "input" not in plain["plan"]
    assert jpeg["hash"] != plain["hash"] and jpeg["count"] == plain["count"]
    flags = plan_json(capsys, str(write(tmp_path, PLAN)), "--input", "jpeg", "--decode-threads", "1")
    assert flags["hash"] == jpeg["hash"]  # the file's table and the flags are one plan
