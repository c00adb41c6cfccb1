"""The noise between two runs measured from their matched entries (``pair_noise``), the unpaired
test's floor it sets, and ``compare --normalize-by plan`` on simulated runs with a known machine
factor, known per-entry offsets and one known regression."""
from __future__ import annotations

import math

import numpy as np
import pytest

from levit_bench import gate
from levit_bench.cli import main
from levit_bench.pair_noise import MIN_ENTRIES, RUN_FACTOR_SD, common_without, pair_noise, run_factor_floor
from levit_bench.verdict import GATE_FLOOR

from .test_gate import make_record, save, timed_entry

MODELS = [f"levit_{n}" for n in ("128s", "128", "192", "256", "384")] + ["efficientnet_b0", "efficientnet_b2"]
BACKENDS = ("torch", "onnxruntime")


def test_the_spread_beyond_the_rounds_error_is_measured():
    rng = np.random.default_rng(0)
    for excess, round_sd in ((0.06, 0.02), (0.03, 0.04), (0.0, 0.03)):
        diffs = 0.1 + rng.normal(0, math.hypot(excess, round_sd), 2000)
        noise = pair_noise(diffs, np.full(2000, round_sd**2))
        assert noise.common == pytest.approx(0.1, abs=0.01)
        assert noise.excess_sd == pytest.approx(excess, abs=0.01)
        assert noise.floor(GATE_FLOOR) == max(GATE_FLOOR, noise.excess_sd)
    few = pair_noise([0.1] * (MIN_ENTRIES - 1), [0.0] * (MIN_ENTRIES - 1))
    assert few.excess_sd is None and few.floor(GATE_FLOOR) == GATE_FLOOR and few.common_se() == 0.0
    assert pair_noise([], []).entries == 0


def test_a_few_regressed_entries_move_neither_the_common_ratio_nor_the_floor():
    rng = np.random.default_rng(1)
    diffs = rng.normal(-0.1, 0.04, 18)
    clean = pair_noise(diffs, np.full(18, 1e-4))
    diffs[:2] -= 0.3  # two entries 26% slower still
    hit = pair_noise(diffs, np.full(18, 1e-4))
    assert abs(hit.common - clean.common) < 0.02 and hit.excess_sd < 0.05  # the true spread is 0.04
    assert float(np.std(diffs)) > 0.09  # an SD would have let the two hide behind a floor they inflated
    assert common_without(list(diffs), 0) == pytest.approx(float(np.median(diffs[1:])))


def _run(seed: int, machine: float, offsets: dict, slower: tuple[str, str] | None = None,
         rounds: int = 8) -> object:
    """Every MODELS x BACKENDS entry, the whole run ``machine`` times slower (no canary), each entry
    its own per-run offset (``offsets``: the process effect no round shows), ``slower`` 25% slower."""
    rng = np.random.default_rng(seed)
    entries = []
    for m in MODELS:
        for b in BACKENDS:
            t = 0.01 * machine * offsets[(m, b)] * (1.25 if (m, b) == slower else 1.0)
            blocks = [t * rng.lognormal(0, 0.02) * rng.lognormal(0, 0.01, 4) for _ in range(rounds)]
            entries.append(timed_entry(m, b, 1, blocks, None))
    return make_record(entries)


def _offsets(seed: int, sd: float) -> dict:
    rng = np.random.default_rng(seed)
    return {(m, b): float(rng.lognormal(0, sd)) for m in MODELS for b in BACKENDS}


def test_normalize_by_plan_flags_only_the_regressed_entry_of_a_slower_run():
    base = _run(0, 1.0, _offsets(10, 0.03))
    new = _run(1, 1.12, _offsets(11, 0.03), slower=("efficientnet_b0", "onnxruntime"))
    plain = gate.compare_runs(base, new, fail_above_pct=5.0)
    # a 12% slower machine is within what two runs' raw factors differ by: not a regression, not a pass
    assert plain.noise.common == pytest.approx(-math.log(1.12), abs=0.04)
    assert not plain.with_outcome("pass") and len(plain.with_outcome("inconclusive")) >= len(plain.rows) - 1
    plan = gate.compare_runs(base, new, "plan", fail_above_pct=5.0)
    assert plan.plan and [r.base.model + "/" + r.base.backend for r in plan.with_outcome("fail")] == \
        ["efficientnet_b0/onnxruntime"]
    assert plan.failed() and all(r.gated for r in plan.rows)


def test_without_plan_the_floor_holds_the_run_factor_the_adjustments_leave():
    """A common shift within what two runs' machine factors differ by is inconclusive; beyond it,
    every entry fails; the canary and the on-CPU share leave less of the factor than raw figures."""
    base = _run(0, 1.0, _offsets(10, 0.03))
    for machine, outcome in ((1.12, "inconclusive"), (1.6, "fail")):
        rows = gate.compare_runs(base, _run(1, machine, _offsets(11, 0.03)), fail_above_pct=5.0).rows
        assert [r.outcome for r in rows] == [outcome] * len(rows), machine
    floors = [run_factor_floor(by, GATE_FLOOR) for by in (("on_cpu", "canary"), ("on_cpu",), ("canary",), ())]
    assert floors[0] == floors[1] < floors[2] < floors[3] and floors[0] > GATE_FLOOR
    assert floors[0] == pytest.approx(math.hypot(GATE_FLOOR, math.sqrt(2) * RUN_FACTOR_SD["on_cpu"]))
    assert floors[3] == pytest.approx(math.hypot(GATE_FLOOR, math.sqrt(2) * RUN_FACTOR_SD["raw"]))


def test_a_measured_spread_widens_the_test_so_clean_entries_with_process_offsets_do_not_fail():
    """Per-entry offsets of 8% (SD) between runs, no change: with the 1.9% floor of one VM most
    entries that moved fail; with the floor the entries measure, none does."""
    base, new = _run(0, 1.0, _offsets(20, 0.08)), _run(1, 1.0, _offsets(21, 0.08))
    result = gate.compare_runs(base, new, "plan", fail_above_pct=5.0)
    assert result.noise.excess_sd > 0.05 and not result.with_outcome("fail") and not result.failed()
    diffs = [gate.log_ratio(gate.figures(r.base, False), gate.figures(r.new, False))[0] for r in result.rows]
    constant = [gate.slowdown_verdict(gate.figures(r.base, False), gate.figures(r.new, False), threshold=0.05,
                                      alpha=gate.DEFAULT_ALPHA, floor=GATE_FLOOR).outcome for r in result.rows]
    assert constant.count("fail") >= 2 and min(diffs) < -0.05


def test_compare_normalize_by_plan_on_the_command_line(tmp_path, capsys):
    base = save(_run(0, 1.0, _offsets(10, 0.03)), tmp_path / "base.json")
    new = save(_run(1, 1.12, _offsets(11, 0.03), slower=("efficientnet_b0", "onnxruntime")), tmp_path / "new.json")
    assert main(["compare", base, new, "--fail-above", "5", "--inconclusive", "fail", "--markdown", "-"]) == 1
    out = capsys.readouterr().out
    assert "the entries moved together by -1" in out and "--normalize-by plan tests each entry" in out
    assert "a shift all entries share within it is inconclusive" in out
    assert main(["compare", base, new, "--fail-above", "5", "--normalize-by", "plan", "--markdown", "-"]) == 1
    out = capsys.readouterr().out
    assert "divided out: each entry is tested against the median of the others" in out
    assert out.startswith("**gate --fail-above 5%: FAIL (efficientnet_b0/onnxruntime batch 1 ")
    assert main(["compare", base, save(_run(1, 1.12, _offsets(11, 0.03)), tmp_path / "clean.json"),
                 "--fail-above", "5", "--normalize-by", "plan"]) == 0
    capsys.readouterr()
    few = make_record(_run(0, 1.0, _offsets(10, 0.03)).results[:MIN_ENTRIES - 1])
    assert main(["compare", save(few, tmp_path / "few.json"), save(few, tmp_path / "few2.json"),
                 "--normalize-by", "plan"]) == 2
    assert f"at least {MIN_ENTRIES} are needed" in capsys.readouterr().err
