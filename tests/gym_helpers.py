"""Helpers shared by the Gymnasium bridge's tests."""

import os
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent


def box(low, high, shape):
    return SimpleNamespace(low=np.full(shape, low), high=np.full(shape, high), shape=shape)


ACTION_SPACES = {
    "discrete": SimpleNamespace(n=4),
    "box": box(-2.0, 3.0, (3,)),
    "unbounded box": box(-np.inf, np.inf, (2,)),
}


def random_params(policy, key):
    """Params with weights of order 1, so the heads see outputs across their range."""
    params = policy.init(key)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    )


def members(population):
    size = jax.tree.leaves(population)[0].shape[0]
    return [jax.tree.map(lambda leaf, i=i: leaf[i], population) for i in range(size)]


def cartpole_population():
    """A linear CartPole policy and a population of 6 random members."""
    from es_toolkit import gym as gym_lib
    from es_toolkit.policies import make_policy

    env = gym_lib.make_env("CartPole-v1")
    policy = make_policy("linear", env.observation_space, env.action_space, zero_init=False)
    population = jax.vmap(policy.init)(jax.random.split(jax.random.key(0), 6))
    return policy, population


@pytest.fixture
def misbehaving_envs(monkeypatch):
    """Makes ``gym_test_envs`` importable here and in worker processes (import this
    fixture into a test module to use it)."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.syspath_prepend(str(TESTS))


def assert_stopped(pool):
    assert pool._workers == []


def worker_processes(pool):
    return [worker.process for worker in pool._workers]
