"""Every training backend keeps one contract: the same policy and strategy for a config,
blocks of exactly the generations asked for, and evaluations of the episodes asked for."""

import dataclasses

import jax
import numpy as np
import pytest

from es_toolkit.training import BACKENDS, ConfigError, TrainConfig, open_backend, resolve_backend
from es_toolkit.training.state import init_state

CONFIG = TrainConfig(population_size=8, eval_episodes=3, sigma=0.1, num_workers=1)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_a_backend_runs_blocks_and_evaluations_of_cartpole(name):
    config = dataclasses.replace(CONFIG, backend=name)
    backend = open_backend(config)
    try:
        assert backend.name == name == resolve_backend(config)
        assert backend.observation_shape == (4,)
        state = init_state(config, backend.policy, backend.strategy, backend.observation_shape)
        state, metrics, eval_returns = backend.block(2)(state)
        assert int(state.generation) == 2
        assert len(np.asarray(metrics["return_mean"])) == 2
        assert int(state.env_steps) == int(np.sum(metrics["generation_env_steps"])) >= 16
        assert np.asarray(eval_returns).shape == (3,)
        assert float(state.best_return) == pytest.approx(float(np.mean(eval_returns)))
        returns = backend.evaluate(jax.random.key(0), state.best_params, state.best_obs_stats, 5)
        assert returns.shape == (5,)
        assert np.all((returns >= 1) & (returns <= 500))  # CartPole's episode returns
    finally:
        backend.close()


def test_both_backends_build_the_same_policy_and_strategy():
    jax_backend = open_backend(dataclasses.replace(CONFIG, backend="jax"))
    gym_backend = open_backend(dataclasses.replace(CONFIG, backend="gymnasium"))
    try:
        like = init_state(CONFIG, jax_backend.policy, jax_backend.strategy, (4,))
        other = init_state(CONFIG, gym_backend.policy, gym_backend.strategy, (4,))
        np.testing.assert_array_equal(like.strategy_state.mean["w"], other.strategy_state.mean["w"])
    finally:
        gym_backend.close()


def test_auto_picks_the_port_and_falls_back_to_gymnasium():
    assert resolve_backend(TrainConfig(env="Pendulum-v1")) == "jax"
    assert resolve_backend(TrainConfig(env="Hopper-v5")) == "gymnasium"
    with pytest.raises(ConfigError, match="has no JAX-native port"):
        open_backend(TrainConfig(env="Hopper-v5", backend="jax"))
    with pytest.raises(ConfigError, match="use num_workers"):
        open_backend(TrainConfig(backend="gymnasium", devices=2))
