"""The backend for JAX-native environments (``es_toolkit.envs``: the ports, and Brax's envs
as ``brax/NAME``): a block of generations and the evaluation after it run as one jitted
function, sharded over devices when asked."""

import dataclasses
from typing import Any

import jax
import numpy as np

from es_toolkit import parallel, population_shard, rollout
from es_toolkit.envs import make as make_env
from es_toolkit.envs import registered
from es_toolkit.envs.brax_envs import is_brax_id
from es_toolkit.policies import merge_stacked_obs_stats
from es_toolkit.strategies.base import own_members
from es_toolkit.training import keys
from es_toolkit.training.config import ConfigError, TrainConfig, build_policy, build_strategy
from es_toolkit.training.state import TrainState, policy_stats, record_evaluation, update


class JaxEnvBackend:
    name = "jax"

    @staticmethod
    def handles(env_id: str) -> bool:
        return env_id in registered() or is_brax_id(env_id)

    def __init__(self, config: TrainConfig):
        if not self.handles(config.env):
            raise ConfigError(
                "backend",
                f"env {config.env!r} has no JAX-native port (ported: "
                f"{', '.join(registered())}, and Brax's envs as 'brax/NAME'); use backend "
                "gymnasium.",
            )
        self.config = config
        self.env = make_env(config.env)
        self.env_params = self.env.default_params
        if config.max_episode_steps is not None:
            self.env_params = dataclasses.replace(
                self.env_params, max_steps_in_episode=config.max_episode_steps
            )
        observation_space = self.env.observation_space(self.env_params)
        self.policy = build_policy(
            config, observation_space, self.env.action_space(self.env_params)
        )
        self.strategy = build_strategy(config)
        self.observation_shape = tuple(observation_space.shape)
        self._blocks: dict[int, Any] = {}

    def block(self, length: int):
        """``length`` generations, then an evaluation of the mean policy (jitted, cached)."""
        if length not in self._blocks:
            self._blocks[length] = _make_block(self, length, population_mesh(self.config))
        return self._blocks[length]

    def evaluate(self, key, params, obs_stats, num_episodes: int) -> np.ndarray:
        run = jax.jit(
            lambda k: rollout.evaluate(
                k, self.env, self.env_params, self.policy.apply, params, obs_stats, num_episodes
            )
        )
        return np.asarray(run(key).returns)

    def close(self) -> None:
        """Nothing to release: the env is a pure function."""


def population_mesh(config: TrainConfig):
    """The devices a run shards over: ``config.devices``, every device of every process in
    a multi-process run, or none (one device)."""
    if config.devices is not None:
        return parallel.make_mesh(config.devices)
    return parallel.make_mesh() if jax.process_count() > 1 else None


def _make_block(backend: JaxEnvBackend, length: int, mesh: Any):
    config, strategy = backend.config, backend.strategy
    env, env_params, apply = backend.env, backend.env_params, backend.policy.apply

    def generation(state: TrainState, _):
        key = keys.generation_key(config.seed, state.generation)
        # This device's members (all of them unless sharded), then every member's results.
        start, count = own_members(strategy)
        episodes = rollout.evaluate_population(
            key,
            env,
            env_params,
            apply,
            strategy.ask(key, state.strategy_state, start, count),
            policy_stats(config, state.obs_stats),
            config.episodes_per_member,
            common_random_numbers=config.common_random_numbers,
            first_member=start,
            merge_stats=False,
        )
        returns, lengths, stats = population_shard.all_gather(episodes)
        episodes = rollout.Episodes(returns, lengths, merge_stacked_obs_stats(stats))
        return update(config, strategy, state, key, episodes)

    def block(state: TrainState):
        state, metrics = jax.lax.scan(generation, state, length=length)
        evaluation = rollout.evaluate(
            keys.evaluation_key(config.seed, state.generation),
            env,
            env_params,
            apply,
            state.strategy_state.mean,
            policy_stats(config, state.obs_stats),
            config.eval_episodes,
        )
        return record_evaluation(state, evaluation.returns), metrics, evaluation.returns

    # Sharded, every device runs its members' episodes; the evaluation of the mean policy
    # is repeated on each (its episodes are few).
    return jax.jit(parallel.shard(block, mesh))
