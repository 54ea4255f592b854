"""Blocks of training generations, for JAX-native and for Gymnasium environments.

``block(state) -> (state, per-generation metrics, evaluation returns)`` runs
``config.eval_every`` generations (ask, every member's episodes, tell, observation
statistics merged over the population), then evaluates the mean policy and keeps the best
one. The JAX block is one jitted function; the Gymnasium block runs the episodes in a
``RolloutPool`` between jitted ``ask`` and update steps. Both draw every random number
from ``(seed, generation)``: a resumed run continues with the numbers of a run never
stopped, and a Gymnasium run does not depend on the number of workers.

``config`` is a ``train.TrainConfig``, ``task`` a ``train.Task``, ``state`` a
``train.TrainState``.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import gym as gym_lib
from es_toolkit import parallel, population_shard, rollout
from es_toolkit.policies import merge_obs_stats, merge_stacked_obs_stats
from es_toolkit.strategies.base import fitness_metrics, own_members


def run_key(config: Any) -> jax.Array:
    return jax.random.fold_in(jax.random.key(config.seed), 1)


def eval_key(config: Any) -> jax.Array:
    return jax.random.fold_in(jax.random.key(config.seed), 2)


def policy_stats(config: Any, stats: Any) -> Any:
    """The statistics the policy normalizes with: none without ``normalize_obs``."""
    return stats if config.normalize_obs else None


def update(config: Any, task: Any, state: Any, key: jax.Array, episodes: rollout.Episodes):
    """Tells the strategy the members' returns and merges the generation into ``state``.

    Fitness is the mean return minus ``reward_shift`` per step (ARS removes the survival
    bonus of locomotion tasks this way, so standing still earns nothing).
    """
    steps = jnp.sum(episodes.lengths)
    returns = jnp.asarray(episodes.returns, jnp.float32)
    fitness = returns
    if config.reward_shift:
        per_episode = jnp.asarray(episodes.lengths, jnp.float32) / config.episodes_per_member
        fitness = fitness - config.reward_shift * per_episode
    strategy_state, metrics = task.strategy.tell(key, state.strategy_state, fitness)
    if config.reward_shift:  # keep the shifted fitness and report the true returns too
        metrics.update(_renamed(fitness_metrics(returns)))
    else:
        metrics = _renamed(metrics)
    state = state._replace(
        strategy_state=strategy_state,
        obs_stats=merge_obs_stats(state.obs_stats, episodes.obs_stats),
        generation=state.generation + 1,
        env_steps=state.env_steps + steps,
    )
    return state, {**metrics, "generation_env_steps": steps}


def record_evaluation(state: Any, eval_returns: jax.Array) -> Any:
    """Keeps the mean policy (and its statistics) if its evaluation is the best so far."""
    score = jnp.mean(eval_returns)
    better = score > state.best_return
    mean = state.strategy_state.mean
    return state._replace(
        best_params=_where(better, mean, state.best_params),
        best_obs_stats=_where(better, state.obs_stats, state.best_obs_stats),
        best_return=jnp.maximum(score, state.best_return),
    )


def make_jax_block(config: Any, task: Any, mesh: Any = None):
    """The block for a JAX-native env, jitted whole; with a ``mesh`` (see
    ``es_toolkit.parallel``), each generation's population is sharded over its devices."""
    strategy, env, env_params, apply = task.strategy, task.env, task.env_params, task.policy.apply

    def generation(state, _):
        key = jax.random.fold_in(run_key(config), state.generation)
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
        return update(config, task, state, key, episodes)

    def block(state):
        state, metrics = jax.lax.scan(generation, state, length=config.eval_every)
        evaluation = rollout.evaluate(
            jax.random.fold_in(eval_key(config), state.generation),
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


def make_gym_block(config: Any, task: Any, pool: gym_lib.RolloutPool):
    """The block for a Gymnasium env: episodes in ``pool``, the rest jitted. With several
    processes, each runs its share of the members in its own workers and the results are
    gathered, so every process computes the same update."""
    record = jax.jit(record_evaluation)
    start, count = parallel.process_share(task.strategy.population_size)

    def prepare(state):
        """The generation's key, this process's members and their env seeds."""
        key = jax.random.fold_in(run_key(config), state.generation)
        seeds = gym_lib.seed_table(
            key,
            count,
            config.episodes_per_member,
            common_random_numbers=config.common_random_numbers,
            first_member=start,
        )
        return key, task.strategy.ask(key, state.strategy_state, start, count), seeds

    # One dispatch per generation, between its episodes and the next generation's: for
    # envs that step in microseconds each dispatch is a visible share of a generation.
    @jax.jit
    def tell_and_prepare(state, key, returns, lengths, stats):
        merged = gym_lib.merge_episode_stats(stats)
        state, metrics = update(
            config, task, state, key, rollout.Episodes(returns, lengths, merged)
        )
        return state, metrics, prepare(state)

    first_prepare = jax.jit(prepare)

    def block(state):
        per_generation = []
        key, population, seeds = first_prepare(state)
        for _ in range(config.eval_every):
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
            jax.random.fold_in(eval_key(config), state.generation),
            state.strategy_state.mean,
            policy_stats(config, state.obs_stats),
            config.eval_episodes,
        )
        metrics = jax.tree.map(lambda *values: np.stack(values), *per_generation)
        return record(state, evaluation.returns), metrics, evaluation.returns

    return block


def _renamed(metrics: dict[str, Any]) -> dict[str, Any]:
    return {name.replace("fitness_", "return_"): value for name, value in metrics.items()}


def _where(condition, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)
