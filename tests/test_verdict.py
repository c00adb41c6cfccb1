"""The gate's verdict (``verdict.slowdown_verdict``) on simulated rounds with a known machine drift and a
known effect, as the rerun study of issue 21 found them: each run its own machine-wide factor (12%),
a per-block drift the canary timed next to the block shares, a per-process floor, rounds 10-18% apart.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from levit_bench import stats, verdict
from levit_bench.stats import PROCESS_FLOOR, adjusted_rounds
from levit_bench.verdict import FAIL, INCONCLUSIVE, PASS, slowdown_verdict


def simulated_run(rng: np.random.Generator, rounds: int, slowdown: float = 0.0, *, run_sd: float = 0.12,
                  shared_sd: float = 0.09, local_sd: float = 0.06, own_sd: float = 0.03, canary_sd: float = 0.02,
                  process_sd: float = PROCESS_FLOOR / math.sqrt(2), calls: int = 10):
    """One run of one entry: per-round per-image seconds and the canary's seconds next to each block.

    Log time = run factor + block drift (shared with the canary) + drift the canary misses + the
    entry's own round noise + the process's effect + log(1 + slowdown); calls 5% apart.  Raw round
    medians spread about 11%, adjusted ones about 7%."""
    machine, process = rng.normal(0, run_sd), rng.normal(0, process_sd)
    out, canary = [], []
    for _ in range(rounds):
        shared = rng.normal(0, shared_sd)
        log_t = machine + shared + rng.normal(0, local_sd) + rng.normal(0, own_sd) + process + math.log1p(slowdown)
        out.append(0.004 * math.exp(log_t) * rng.lognormal(0, 0.05, calls))
        canary.append(0.0005 * math.exp(machine + shared + rng.normal(0, canary_sd)))
    return out, canary


def outcomes(slowdown: float, rounds: int, trials: int, *, adjusted: bool = True, seed: int = 0,
             alpha: float = 0.05) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    got = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0}
    for _ in range(trials):
        (b, bc), (n, nc) = simulated_run(rng, rounds), simulated_run(rng, rounds, slowdown)
        if adjusted:
            b, n = adjusted_rounds(b, bc), adjusted_rounds(n, nc)
        got[slowdown_verdict(b, n, threshold=0.05, alpha=alpha).outcome] += 1
    return {k: v / trials for k, v in got.items()}


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [6, 10])
def test_clean_reruns_are_falsely_flagged_at_most_about_alpha(rounds):
    for alpha in (0.05, 0.02):
        rate = outcomes(0.0, rounds, 400, seed=rounds, alpha=alpha)[FAIL]
        assert rate <= alpha * 1.25 + 0.01, (alpha, rate)  # binomial slack at 400 trials


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [6, 10])
def test_slowdowns_of_10_and_20_percent_are_never_passed_and_20_is_flagged(rounds):
    ten, twenty = outcomes(0.10, rounds, 200, seed=1), outcomes(0.20, rounds, 200, seed=2)
    assert ten[PASS] <= 0.01 and ten[FAIL] >= 0.5, ten  # flagged or inconclusive, (almost) never pass
    assert twenty[PASS] == 0 and twenty[FAIL] >= 0.97, twenty
    five = outcomes(0.05, rounds, 200, seed=3)
    assert five[PASS] <= 0.08 < five[FAIL] + five[INCONCLUSIVE]


@pytest.mark.slow
def test_the_canary_removes_the_machine_wide_factor():
    """Raw figures carry each run's 12% machine factor: clean reruns fail a quarter of the time and
    a 20% slowdown is passed now and then; adjusted, neither."""
    raw, adjusted = outcomes(0.0, 8, 300, adjusted=False, seed=4), outcomes(0.0, 8, 300, seed=4)
    assert raw[FAIL] > 0.15 and adjusted[FAIL] <= 0.07
    assert outcomes(0.20, 8, 300, adjusted=False, seed=5)[PASS] > 0.02
    assert outcomes(0.20, 8, 300, seed=5)[PASS] == 0


def test_canary_adjustment_cancels_a_factor_common_to_block_and_canary():
    rng = np.random.default_rng(6)
    base = [0.01 * rng.lognormal(0, 0.01, 10) for _ in range(8)]
    factors = rng.lognormal(0, 0.15, 8)  # a machine 0-40% slower round by round, and a 1.3x slower run
    canary = 0.001 * np.ones(8)
    slow_machine = [r * f * 1.3 for r, f in zip(base, factors)]
    v_raw = slowdown_verdict(base, slow_machine, threshold=0.05)
    v_adj = slowdown_verdict(adjusted_rounds(base, canary), adjusted_rounds(slow_machine, canary * factors * 1.3),
                             threshold=0.05)
    assert v_raw.outcome == FAIL and v_adj.outcome == PASS and v_adj.ratio == pytest.approx(1.0, abs=1e-9)
    assert adjusted_rounds(base, canary[:3]) is None  # a round without its canary: no adjusted figures
    assert adjusted_rounds(base, np.r_[canary[:7], 0.0]) is None


def test_unpaired_test_is_welch_on_log_round_medians_widened_by_the_floor():
    rng = np.random.default_rng(7)
    base = [0.01 * rng.lognormal(0, 0.05, 5) * rng.lognormal(0, 0.05) for _ in range(7)]
    new = [0.0106 * rng.lognormal(0, 0.05, 5) * rng.lognormal(0, 0.05) for _ in range(6)]
    lb, ln = (np.log([np.median(r) for r in x]) for x in (base, new))
    bare = slowdown_verdict(base, new, threshold=0.05, floor=0.0)
    assert bare.p == pytest.approx(sps.ttest_ind(ln, lb, equal_var=False, alternative="greater").pvalue, rel=1e-9)
    assert bare.ratio == pytest.approx(math.exp(lb.mean() - ln.mean()))
    floored = slowdown_verdict(base, new, threshold=0.05)
    assert floored.p > bare.p and floored.interval[0] < bare.interval[0] < bare.ratio < bare.interval[1]
    assert floored.rounds == (7, 6) and not floored.paired


def test_paired_test_is_a_one_sample_t_on_the_per_round_log_ratios():
    rng = np.random.default_rng(8)
    drift = rng.lognormal(0, 0.15, 8)  # shared by both sides of each round: cancels
    base = [0.01 * d * rng.lognormal(0, 0.02, 6) for d in drift]
    new = [0.0112 * d * rng.lognormal(0, 0.02, 6) for d in drift]
    v = slowdown_verdict(base, new, threshold=0.05, paired=True)
    logs = np.log([np.median(b) / np.median(n) for b, n in zip(base, new)])
    assert v.p == pytest.approx(sps.ttest_1samp(logs, 0.0, alternative="less").pvalue, rel=1e-9)
    assert v.outcome == FAIL and v.paired and v.ratio == pytest.approx(1 / 1.12, rel=0.03)
    assert slowdown_verdict(base, new, threshold=0.05).outcome != FAIL  # unpaired, the drift hides it
    with pytest.raises(ValueError, match="differ in number"):
        slowdown_verdict(base, new[:5], threshold=0.05, paired=True)


def spread_rounds(n: int, sd: float, slowdown: float = 0.0) -> list[np.ndarray]:
    """``n`` rounds whose log medians sit at the normal quantiles scaled to exactly ``sd``."""
    z = sps.norm.ppf((np.arange(n) + 0.5) / n)
    z = (z - z.mean()) / z.std(ddof=1) * sd
    return [0.01 * (1 + slowdown) * np.exp(v) * np.array([0.98, 1.0, 1.02]) for v in z]


def test_inconclusive_says_how_many_more_rounds_would_decide():
    v = slowdown_verdict(spread_rounds(5, 0.05), spread_rounds(5, 0.05), threshold=0.05)
    assert v.ratio == pytest.approx(1.0) and v.outcome == INCONCLUSIVE
    assert v.more_rounds is not None and 1 < v.more_rounds < 100
    assert "5% change cannot be told at this noise" in v.reason and f"about {v.more_rounds} more rounds" in v.reason
    # at the same spread and estimate, exactly that many more rounds decide it, one fewer does not
    n = 5 + v.more_rounds
    assert slowdown_verdict(spread_rounds(n, 0.05), spread_rounds(n, 0.05), threshold=0.05).outcome == PASS
    assert slowdown_verdict(spread_rounds(n - 1, 0.05), spread_rounds(n - 1, 0.05), threshold=0.05).outcome \
        == INCONCLUSIVE
    # an estimate leaning to fail: the rounds that would make the slowdown significant
    slow = slowdown_verdict(spread_rounds(3, 0.15), spread_rounds(3, 0.15, 0.12), threshold=0.05)
    assert slow.outcome == INCONCLUSIVE and slow.more_rounds is not None
    m = 3 + slow.more_rounds
    assert slowdown_verdict(spread_rounds(m, 0.15), spread_rounds(m, 0.15, 0.12), threshold=0.05).outcome == FAIL
    # a noisier machine needs more
    assert slowdown_verdict(spread_rounds(5, 0.08), spread_rounds(5, 0.08), threshold=0.05).more_rounds > v.more_rounds


def test_the_process_floor_can_make_more_rounds_useless():
    """A 4% slowdown on a perfectly quiet machine: the 2% between processes alone keeps the bound
    from ruling out 5%, so no number of rounds would decide it; timed in one job (paired) it passes."""
    base = [np.full(5, 0.01) * (1 + 0.001 * i) for i in range(10)]
    new = [r * 1.04 for r in base]
    v = slowdown_verdict(base, new, threshold=0.05)
    assert v.outcome == INCONCLUSIVE and v.more_rounds is None and "separates the two sides" in v.reason
    assert slowdown_verdict(base, new, threshold=0.05, paired=True).outcome == PASS


def test_one_round_on_a_side_is_inconclusive_and_bad_times_are_refused():
    v = slowdown_verdict([np.full(20, 0.01)], [np.full(20, 0.02)], threshold=0.05)
    assert v.outcome == INCONCLUSIVE and v.more_rounds is None and "one round" in v.reason
    good = [np.full(5, 0.01) * np.linspace(1, 1.1, 5)] * 3
    for bad in ([np.r_[good[0], np.nan]], [np.r_[good[0], -0.01]], [np.r_[good[0], np.inf]], []):
        with pytest.raises(ValueError, match="finite and positive"):
            slowdown_verdict(good, bad, threshold=0.05)
    with pytest.raises(ValueError, match="threshold"):
        slowdown_verdict(good, good, threshold=1.5)


def test_verdict_is_deterministic_and_exact_on_identical_rounds():
    rng = np.random.default_rng(10)
    base = [0.01 * rng.lognormal(0, 0.05, 5) for _ in range(6)]
    assert slowdown_verdict(base, base, threshold=0.05) == slowdown_verdict(base, base, threshold=0.05)
    same = slowdown_verdict(base, base, threshold=0.05, paired=True)
    assert same.outcome == PASS and same.ratio == 1.0 and same.interval == (1.0, 1.0)
    assert verdict.MAX_MORE_ROUNDS >= 100


# ---------------------------------------------------------------------------------------------
# ab --processes K: the process as the unit


def simulated_ab(rng: np.random.Generator, processes: int, rounds: int, slowdown: float = 0.0, *,
                 pair_effect_sd: float = 0.08, process_sd: float = 0.04, drift_sd: float = 0.10,
                 pair_sd: float = 0.05, round_sd: float = 0.04):
    """Both sides of an A/B, each in ``processes`` processes: an effect process k of both sides share
    (they started together: SD ``pair_effect_sd``) and one of each process's own (``process_sd``),
    as seen for levit_128s on the 2026-12-03 VM; a drift each round shares with all its blocks, one
    the adjacent blocks of a process pair share, and per-block noise: per-process lists of per-image
    rounds."""
    sides = ([], [])
    offsets = rng.normal(0, process_sd, (2, processes)) + rng.normal(0, pair_effect_sd, processes)
    shared = rng.normal(0, drift_sd, rounds)
    for k in range(processes):
        drift = shared + rng.normal(0, pair_sd, rounds)
        for s, side in enumerate(sides):
            slow = math.log1p(slowdown) if s else 0.0
            side.append([0.01 * math.exp(offsets[s, k] + slow + d + rng.normal(0, round_sd)) * np.array([0.99, 1.01])
                         for d in drift])
    return sides


def ab_outcomes(slowdown: float, processes: int, trials: int, seed: int, alpha: float = 0.02) -> dict[str, dict]:
    """Outcome rates on the same simulated A/Bs of the paired process test, of Welch's on the
    process means, and of the one-pair paired test with the assumed floor (first pair only)."""
    from levit_bench.gate import AB_FLOOR

    rng = np.random.default_rng(seed)
    got = {k: {PASS: 0, FAIL: 0, INCONCLUSIVE: 0} for k in ("process", "welch", "one pair")}
    for _ in range(trials):
        base, new = simulated_ab(rng, processes, 8, slowdown)
        got["process"][verdict.process_verdict(base, new, threshold=0.05, alpha=alpha).outcome] += 1
        got["welch"][verdict.process_verdict(base, new, threshold=0.05, alpha=alpha, paired=False).outcome] += 1
        got["one pair"][slowdown_verdict(base[0], new[0], threshold=0.05, alpha=alpha, paired=True,
                                         floor=AB_FLOOR).outcome] += 1
    return {k: {o: n / trials for o, n in v.items()} for k, v in got.items()}


def test_process_offsets_flag_a_a_pairs_under_the_floor_but_not_in_the_process_tests():
    """A/A with per-process offsets: one pair of processes and the assumed 1.4% floor flags far more
    than alpha (the offset is whole in every round's ratio); both process tests stay near alpha."""
    rates = ab_outcomes(0.0, processes=4, trials=300, seed=3)
    for test in ("process", "welch"):
        assert rates[test][FAIL] <= 0.02 * 1.5 + 0.01, rates
    assert rates["one pair"][FAIL] >= 4 * 0.02, rates


def test_the_paired_process_test_flags_a_slowdown_where_welch_cannot_and_never_passes_10():
    twenty, ten = ab_outcomes(0.20, 4, 200, seed=4), ab_outcomes(0.10, 4, 200, seed=5)
    assert twenty["process"][FAIL] >= 0.9 and twenty["process"][FAIL] > twenty["welch"][FAIL] + 0.2, twenty
    assert ten["process"][PASS] <= 0.01 and ten["process"][FAIL] >= 0.3, ten  # K = 4: 3 degrees of freedom


def _process_means(processes):
    return [np.log([np.median(r) for r in p]).mean() for p in processes]


def test_process_verdict_is_a_t_test_on_process_means_and_says_how_many_more_processes():
    rng = np.random.default_rng(6)
    base, new = simulated_ab(rng, 3, 6)
    mb, mn = _process_means(base), _process_means(new)
    paired = verdict.process_verdict(base, new, threshold=0.05, alpha=0.05)
    # scipy's tests of "new slower" on log seconds: one-sample on the per-pair differences, or Welch
    assert paired.p == pytest.approx(sps.ttest_1samp(np.subtract(mb, mn), 0.0, alternative="less").pvalue, rel=1e-9)
    welch = verdict.process_verdict(base, new, threshold=0.05, alpha=0.05, paired=False)
    assert welch.p == pytest.approx(sps.ttest_ind(mn, mb, equal_var=False, alternative="greater").pvalue, rel=1e-9)
    assert paired.processes == (3, 3) and paired.rounds == (18, 18) and paired.more_rounds is None
    near = verdict.process_verdict([spread_rounds(6, 0.02)] * 2 + [spread_rounds(6, 0.02, 0.06)],
                                   [spread_rounds(6, 0.02, 0.03)] * 3, threshold=0.05)
    assert near.outcome == INCONCLUSIVE and near.more_processes
    assert f"about {near.more_processes} more process" in near.reason
    with pytest.raises(ValueError, match="two processes"):
        verdict.process_verdict(base[:1], new, threshold=0.05)
    with pytest.raises(ValueError, match="differ in number"):
        verdict.process_verdict(base[:2], new, threshold=0.05)
