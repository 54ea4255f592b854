"""Rollout workers (``es_toolkit.gym.pool``): errors that name the env, member and seed,
dead workers that are errors and not hangs, and no worker left behind.
"""

import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gym_helpers import (  # noqa: E402
    assert_stopped,
    cartpole_population,
    use_misbehaving_envs,
    worker_processes,
)

from es_toolkit import gym as gym_lib  # noqa: E402
from es_toolkit.gym import RolloutError, RolloutPool, WorkerSpec  # noqa: E402


@pytest.fixture(scope="module")
def cartpole():
    return cartpole_population()


@pytest.fixture
def misbehaving_envs(monkeypatch):
    use_misbehaving_envs(monkeypatch)


@pytest.mark.usefixtures("misbehaving_envs")
def test_env_error_names_env_member_and_seed_and_stops_the_workers():
    spec = WorkerSpec("gym_test_envs:RaisingEnv-v0", "linear", {})
    pool = RolloutPool(spec, 2)
    processes = worker_processes(pool)
    params = {"w": np.zeros((3, 2, 2), np.float32), "b": np.zeros((3, 2), np.float32)}
    with pytest.raises(
        RolloutError,
        match=r"RaisingEnv-v0: FloatingPointError: simulation diverged "
        r"\(member (0, seed 11|1, seed 12|2, seed 13)\)",
    ):
        pool.run(params, [0, 1, 2], [11, 12, 13])
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)
    with pytest.raises(RolloutError, match="closed"):
        pool.run(params, [0], [1])


@pytest.mark.usefixtures("misbehaving_envs")
def test_dead_worker_is_an_error_not_a_hang():
    pool = RolloutPool(WorkerSpec("gym_test_envs:DyingEnv-v0", "linear", {}), 2)
    processes = worker_processes(pool)
    params = {"w": np.zeros((2, 2, 2), np.float32), "b": np.zeros((2, 2), np.float32)}
    start = time.monotonic()
    with pytest.raises(
        RolloutError,
        match=r"DyingEnv-v0: a rollout worker died \(exit code -9\) while running "
        r"member (0 seed 21|1 seed 22)",
    ):
        pool.run(params, [0, 1], [21, 22])
    assert time.monotonic() - start < 30
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed():
    """A parent killed between calls (no ``close``) leaves no worker behind: its workers
    sleep on the doorbell, and its end closing wakes them."""
    script = (
        "import os, numpy as np\n"
        "from es_toolkit.gym import RolloutPool, WorkerSpec\n"
        "pool = RolloutPool(WorkerSpec('CartPole-v1', 'linear', {}), 2)\n"
        "pool.run({'w': np.zeros((2, 4, 2), np.float32), 'b': np.zeros((2, 2), np.float32)},"
        " [0, 1], [1, 2])\n"
        "print(*(process.pid for process, _ in pool._workers), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert parent.returncode == -9, parent.stderr
    pids = [int(pid) for pid in parent.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (an exited child of a dead parent is
    reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_bad_episode_lists_are_refused_and_the_pool_stays_open(cartpole):
    _, population = cartpole
    with RolloutPool(WorkerSpec("CartPole-v1", "linear", {}), 1) as pool:
        with pytest.raises(ValueError, match="1-D of one length"):
            pool.run(population, [0, 1], [5])
        with pytest.raises(ValueError, match="at least one episode"):
            pool.run(population, [], [])
        assert pool.run(population, [2], [5]).lengths[0] > 0


def test_ctrl_c_stops_every_worker(cartpole, monkeypatch):
    _, population = cartpole
    pool = RolloutPool(WorkerSpec("CartPole-v1", "linear", {}), 2)
    processes = worker_processes(pool)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("es_toolkit.gym.pool.wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gym_lib.evaluate_population(pool, jax.random.key(0), population)
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)
