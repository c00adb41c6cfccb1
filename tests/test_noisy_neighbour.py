"""The reproducible noisy neighbour (benchmarks/noisy_neighbour.py, issue 21 item 1): its traces are
seeded and have the level's statistics (checked on the traces, generated without applying them),
and it never leaves a process stopped or running (checked with psutil on short commands)."""
from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "noisy_neighbour.py"


def _load():
    spec = importlib.util.spec_from_file_location("noisy_neighbour", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["noisy_neighbour"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


nn = _load()
CI = nn.LEVELS["ci-like"]


def _autocorr(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))


def test_the_same_seed_gives_the_same_trace_and_a_longer_trace_starts_with_the_shorter():
    a = nn.slowdown_trace("ci-like", 7, 30)
    assert np.array_equal(a, nn.slowdown_trace("ci-like", 7, 30))
    assert np.array_equal(a, nn.slowdown_trace("ci-like", 7, 60)[:len(a)])
    assert not np.allclose(a, nn.slowdown_trace("ci-like", 8, 30))
    assert np.array_equal(nn.competitor_trace("ci-like", 7, 30), nn.competitor_trace("ci-like", 7, 30))
    assert not np.allclose(nn.competitor_trace("ci-like", 7, 30), nn.competitor_trace("ci-like", 8, 30))


def test_quiet_does_nothing():
    assert not nn.slowdown_trace("quiet", 1, 10).any() and not nn.competitor_trace("quiet", 1, 10).any()
    assert not nn.LEVELS["quiet"].duty_cycles and nn.LEVELS["quiet"].competitor == 0


def test_the_per_run_offset_has_the_levels_between_run_spread():
    # the mean log slowdown of many short runs: centred on the level's mean, spread by offset_sd
    # (the walk adds walk_sd² · (averaging factor) on top: small over 60 s at a 4 s correlation time)
    means = np.array([nn.slowdown_trace(CI, seed, 60).mean() for seed in range(300)])
    assert means.mean() == pytest.approx(CI.mean_s, abs=0.03)
    assert means.std() == pytest.approx(math.hypot(CI.offset_sd, 0.04), rel=0.2)
    fractions = nn.stop_fractions(CI, 0, 60)
    assert fractions.min() >= 0 and fractions.max() <= nn.MAX_STOP


def test_the_walk_has_the_levels_correlation_time():
    lvl = replace(CI, offset_sd=0.0, mean_s=1.0)  # far from the clip at 0, so the walk is linear
    s = nn.slowdown_trace(lvl, 3, 20000)
    per_s = round(1 / lvl.period_s)
    for lag_s in (1, 2, 4, 8):
        assert _autocorr(s, lag_s * per_s) == pytest.approx(math.exp(-lag_s / lvl.tau_s), abs=0.06)
    assert s.std() == pytest.approx(lvl.walk_sd, rel=0.15)


def test_derived_seeds_differ_and_repeat():
    seeds = [nn.derive_seed(5, k) for k in range(4)]
    assert len(set(seeds)) == 4 and seeds == [nn.derive_seed(5, k) for k in range(4)]


def _children_alive(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow  # a second and a half: two Python processes start
def test_the_command_line_returns_the_commands_exit_code_and_leaves_nothing_behind():
    cmd = [sys.executable, str(SCRIPT), "--level", "ci-like", "--seed", "1", "--",
           sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    while proc.poll() is None:
        seen |= {p.pid for p in _children_alive(proc.pid)}
        time.sleep(0.05)
    assert proc.returncode == 3
    assert len(seen) >= 2, "expected the command and the competitor"
    time.sleep(0.2)  # the competitor's parent is gone: the kernel killed it, or it was killed
    assert not [pid for pid in seen if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_the_context_manager_continues_the_target_and_kills_the_competitor_however_it_ends():
    lvl = replace(CI, mean_s=2.0, offset_sd=0.0, walk_sd=0.0)  # stopped 86% of every period
    target = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        with pytest.raises(KeyboardInterrupt), nn.neighbour(lvl, 0, target.pid) as n:
            deadline = time.monotonic() + 5
            while psutil.Process(target.pid).status() != psutil.STATUS_STOPPED:
                assert time.monotonic() < deadline, "the target was never stopped"
                time.sleep(0.005)
            competitor = n.competitor
            raise KeyboardInterrupt  # interrupted while the target is stopped
        for _ in range(5):
            assert psutil.Process(target.pid).status() != psutil.STATUS_STOPPED
            time.sleep(0.02)
        assert competitor is None or competitor.poll() is not None
    finally:
        target.kill()
        target.wait()


@pytest.mark.slow  # two seconds: a command that outlives the signal
def test_a_signalled_neighbour_continues_the_command_and_passes_the_signal_on(tmp_path):
    # the command ignores SIGTERM, so it is still there to be looked at after the neighbour got it
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--level", "ci-like", "--seed", "2", "--",
                             sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while len(_children_alive(proc.pid)) < 2:
            assert time.monotonic() < deadline, "the neighbour did not start its command and competitor"
            time.sleep(0.05)
        time.sleep(0.5)
        children = _children_alive(proc.pid)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert len(alive) == 1, "the competitor is still running"
        for _ in range(5):
            assert alive[0].status() != psutil.STATUS_STOPPED
            time.sleep(0.03)
        alive[0].kill()
        assert proc.wait(timeout=10) == 128 + signal.SIGKILL
    finally:
        if proc.poll() is None:
            for p in _children_alive(proc.pid):
                p.kill()
            proc.kill()
            proc.wait()


@pytest.mark.slow  # two Python processes start
def test_bad_input_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, str(SCRIPT), "--level", "loud", "--", "true"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "invalid choice" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, str(SCRIPT), "--level", "quiet"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "after --" in done.stderr


@pytest.mark.slow  # two seconds: the command outlives the noise
def test_the_noise_stops_after_its_duration_and_the_command_runs_on():
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--level", "ci-like", "--seed", "4", "--duration", "0.3",
                             "--", sys.executable, "-c", "import time; time.sleep(2)"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not _children_alive(proc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(1.0)  # well past --duration
        (command,) = _children_alive(proc.pid)  # the competitor is gone, the command runs on
        for _ in range(10):
            assert command.status() != psutil.STATUS_STOPPED
            time.sleep(0.02)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_neighbour_refuses_to_stop_its_own_process():
    with pytest.raises(ValueError, match="another process"):
        nn.Neighbour("ci-like", 0, os.getpid())
