"""The backend for Gymnasium's own environments: episodes in rollout worker processes
(``es_toolkit.gym.RolloutPool``), the strategy's ``ask`` and update jitted in between.

With several processes, each runs its share of the members in its own workers and the
results are gathered, so every process computes the same update.
"""

import jax
import numpy as np

from es_toolkit import gym as gym_lib
from es_toolkit import parallel, rollout
from es_toolkit.training import keys
from es_toolkit.training.config import (
    ConfigError,
    TrainConfig,
    build_policy,
    build_strategy,
    policy_options,
)
from es_toolkit.training.state import TrainState, policy_stats, record_evaluation, update


class GymnasiumBackend:
    name = "gymnasium"

    @staticmethod
    def handles(env_id: str) -> bool:
        return True

    def __init__(self, config: TrainConfig):
        if config.devices is not None:
            raise ConfigError(
                "devices",
                "devices shards JAX environments over devices; Gymnasium envs run in rollout "
                "workers: use num_workers.",
            )
        self.config = config
        env = gym_lib.make_env(config.env, max_episode_steps=config.max_episode_steps)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
        self.policy = build_policy(config, observation_space, action_space)
        if self.policy.numpy_apply is None:
            raise ValueError(f"the {config.policy} policy has no NumPy forward pass for workers.")
        self.strategy = build_strategy(config)
        self.observation_shape = tuple(observation_space.shape)
        self.spec = gym_lib.WorkerSpec(
            config.env, config.policy, policy_options(config), config.max_episode_steps
        )
        self._pool: gym_lib.RolloutPool | None = None
        self._blocks: dict[int, object] = {}

    @property
    def pool(self) -> gym_lib.RolloutPool:
        """The rollout workers, started on first use."""
        if self._pool is None:
            self._pool = gym_lib.RolloutPool(self.spec, self.config.num_workers)
        return self._pool

    def block(self, length: int):
        """``length`` generations in the workers, then an evaluation of the mean policy."""
        if length not in self._blocks:
            self._blocks[length] = _make_block(self, length)
        return self._blocks[length]

    def evaluate(self, key, params, obs_stats, num_episodes: int) -> np.ndarray:
        return gym_lib.evaluate(self.pool, key, params, obs_stats, num_episodes).returns

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _make_block(backend: GymnasiumBackend, length: int):
    config, strategy, pool = backend.config, backend.strategy, backend.pool
    record = jax.jit(record_evaluation)
    start, count = parallel.process_share(strategy.population_size)

    def prepare(state: TrainState):
        """The generation's key, this process's members and their env seeds."""
        key = keys.generation_key(config.seed, state.generation)
        seeds = gym_lib.seed_table(
            key,
            count,
            config.episodes_per_member,
            common_random_numbers=config.common_random_numbers,
            first_member=start,
        )
        return key, strategy.ask(key, state.strategy_state, start, count), seeds

    # One dispatch per generation, between its episodes and the next generation's.
    @jax.jit
    def tell_and_prepare(state, key, returns, lengths, stats):
        merged = gym_lib.merge_episode_stats(stats)
        episodes = rollout.Episodes(returns, lengths, merged)
        state, metrics = update(config, strategy, state, key, episodes)
        return state, metrics, prepare(state)

    first_prepare = jax.jit(prepare)

    def block(state: TrainState):
        per_generation = []
        key, population, seeds = first_prepare(state)
        for _ in range(length):
            episodes = gym_lib.run_population(
                pool,
                population,
                seeds,
                policy_stats(config, state.obs_stats),
                first_member=start,
                merge_stats=False,
            )
            returns, lengths, stats = parallel.gather_processes(episodes)
            state, metrics, (key, population, seeds) = tell_and_prepare(
                state, key, returns, lengths, stats
            )
            per_generation.append(metrics)
        evaluation = gym_lib.evaluate(
            pool,
            keys.evaluation_key(config.seed, state.generation),
            state.strategy_state.mean,
            policy_stats(config, state.obs_stats),
            config.eval_episodes,
        )
        metrics = jax.tree.map(lambda *values: np.stack(values), *per_generation)
        return record(state, evaluation.returns), metrics, evaluation.returns

    return block
