"""Rollout workers (``es_toolkit.gym.pool``): errors that name the env, member and seed,
dead workers that are errors and not hangs, and no worker left behind.
"""

import gc
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

import gym_test_envs  # noqa: E402
from gym_helpers import (  # noqa: E402
    assert_stopped,
    cartpole_population,
    misbehaving_envs,  # noqa: F401
    worker_processes,
)

from es_toolkit import gym as gym_lib  # noqa: E402
from es_toolkit.gym import RolloutError, RolloutPool, WorkerSpec  # noqa: E402


@pytest.fixture(scope="module")
def cartpole():
    return cartpole_population()


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


def doomed_call(episodes: int, doomed: int):
    """Params and the members and seeds of ``episodes`` episodes, episode ``doomed``
    reset with ``DOOMED_SEED``."""
    params = {"w": np.zeros((episodes, 2, 2), np.float32), "b": np.zeros((episodes, 2), np.float32)}
    seeds = 100 + np.arange(episodes)
    seeds[doomed] = gym_test_envs.DOOMED_SEED
    return params, np.arange(episodes), seeds


@pytest.mark.usefixtures("misbehaving_envs")
def test_dead_worker_is_named_with_the_one_member_and_seed_it_was_running():
    """Of 40 episodes in flight, the message names the worker and the one episode that
    killed it (the oracle: the env kills its worker in the episode with that seed only)."""
    pool = RolloutPool(WorkerSpec("gym_test_envs:DoomedEnv-v0", "linear", {}), 2)
    processes = worker_processes(pool)
    params, members, seeds = doomed_call(40, doomed=27)
    with pytest.raises(RolloutError) as raised:
        pool.run(params, members, seeds)
    message = str(raised.value)
    found = re.fullmatch(
        r"gym_test_envs:DoomedEnv-v0: rollout worker ([01]) \(pid (\d+)\) died "
        r"\(exit code -9\) while running member 27, seed 13\.",
        message,
    )
    assert found, message
    assert processes[int(found[1])].pid == int(found[2])
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)


@pytest.mark.usefixtures("misbehaving_envs")
def test_dead_worker_is_an_error_before_the_other_worker_finishes():
    """One worker dies in its first second; the other has 16 or more episodes of 2 s each,
    side by side in one process: 32 s or more. The error comes long before, and both
    workers are stopped."""
    pool = RolloutPool(WorkerSpec("gym_test_envs:SlowDoomedEnv-v0", "linear", {}), 2)
    processes = worker_processes(pool)
    params, members, seeds = doomed_call(33, doomed=0)
    start = time.monotonic()
    with pytest.raises(RolloutError, match="died"):
        pool.run(params, members, seeds)
    assert time.monotonic() - start < 16  # half the survivor's share
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)


@pytest.mark.parametrize("num_workers", [0, -1, 1.5, "2"])
def test_a_pool_refused_at_start_leaves_nothing_to_clean_up(num_workers, monkeypatch):
    """The error names the argument, and the half-built pool's ``__del__`` raises
    nothing (it would print "Exception ignored in ... __del__")."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises((TypeError, ValueError), match="num_workers"):
        RolloutPool(WorkerSpec("CartPole-v1", "linear", {}), num_workers)
    gc.collect()
    assert [hook.exc_value for hook in unraisable] == []


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
        "print(*(process.pid for process, *_ in pool._workers), flush=True)\n"
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
