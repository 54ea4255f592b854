"""Learning tests: with its tuned ``TASK_DEFAULTS`` (and nothing else), every JAX-native
task, and the Gymnasium MuJoCo and Box2D tasks with defaults, reach their thresholds in
the final 100-episode evaluation.

All tests are ``slow`` (deselected by default); run them with
``.venv/bin/pytest -m slow tests/test_learning.py``. Training is a pure function of the
seed, so each test is deterministic on a given machine; the thresholds are those the
defaults are tuned for, with the margins the tuning left (see docs/benchmarks.md, "JAX
environments").
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from es_toolkit.training import TASK_DEFAULTS, TrainConfig, task_defaults, train

ROOT = Path(__file__).resolve().parent.parent

# The final 100-episode mean return each task must reach (Gymnasium's reward thresholds
# where they exist: CartPole-v1 475, Acrobot-v1 -100, MountainCarContinuous-v0 90; the
# usual -200 for Pendulum-v1, which has none; -120 for MountainCar-v0, whose registered
# threshold is -110).
THRESHOLDS = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -120.0,
    "MountainCarContinuous-v0": 90.0,
    "Pendulum-v1": -200.0,
}
CARTPOLE_WALL_LIMIT_S = 60.0
# Gymnasium's own envs in rollout workers (the wall-clock budgets, 10 minutes for
# HalfCheetah-v5 and 20 for Hopper-v5, are benchmark rows in scripts/bench_gym.py).
GYMNASIUM_THRESHOLDS = {
    "HalfCheetah-v5": 3000.0,
    "Hopper-v5": 2000.0,
    "LunarLanderContinuous-v3": 200.0,
}


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(THRESHOLDS))
def test_task_defaults_reach_threshold(env_id, tmp_path):
    defaults = task_defaults(env_id)
    assert defaults.get("target_return", -float("inf")) >= THRESHOLDS[env_id], (
        "the defaults should stop training only once the evaluation passes the threshold"
    )
    result = train(TrainConfig.for_env(env_id), tmp_path, progress=False)
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["final_eval_episodes"] == 100
    assert result.final_return_mean >= THRESHOLDS[env_id], (
        f"{env_id}: final return {result.final_return_mean:.2f} < {THRESHOLDS[env_id]} after "
        f"{summary['generations']} generations ({summary['env_steps']} env steps)"
    )


@pytest.mark.slow
def test_every_registered_task_has_defaults():
    from es_toolkit.envs import registered

    assert set(registered()) <= set(TASK_DEFAULTS)
    assert set(THRESHOLDS) == set(registered())


@pytest.mark.slow
def test_cartpole_from_a_fresh_process_within_a_minute(tmp_path):
    """``python scripts/train.py`` (CartPole-v1 by default) solves it in under a minute,
    start-up and compilation included, with the compiler settings a user gets (the test
    session's own XLA_FLAGS, set in conftest.py, are not passed on)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--out", str(out), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "result.json").read_text())
    assert summary["config"]["env"] == "CartPole-v1"
    assert summary["final_return_mean"] >= THRESHOLDS["CartPole-v1"]
    assert wall < CARTPOLE_WALL_LIMIT_S, f"took {wall:.1f} s"


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(GYMNASIUM_THRESHOLDS))
def test_gymnasium_task_defaults_reach_threshold(env_id, tmp_path):
    result = train(TrainConfig.for_env(env_id), tmp_path, progress=False)
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["config"]["backend"] == "auto"
    assert result.final_return_mean >= GYMNASIUM_THRESHOLDS[env_id], (
        f"{env_id}: final return {result.final_return_mean:.2f} after "
        f"{summary['generations']} generations ({summary['env_steps']} env steps)"
    )
