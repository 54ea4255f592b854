"""The state of a training run and the two updates every backend shares: a generation's
returns told to the strategy, and an evaluation of the mean policy."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from es_toolkit import rollout
from es_toolkit.policies import ObsStats, init_obs_stats, merge_obs_stats
from es_toolkit.strategies import EvolutionStrategy
from es_toolkit.strategies.base import fitness_metrics
from es_toolkit.training import keys
from es_toolkit.training.config import TrainConfig


class TrainState(NamedTuple):
    strategy_state: Any  # the strategy's state; its mean is the current policy
    obs_stats: ObsStats  # statistics of every observation seen in training
    generation: jax.Array  # int32 generations done
    env_steps: jax.Array  # int32 environment steps taken in training
    best_params: Any  # the mean policy with the best evaluation so far
    best_obs_stats: ObsStats  # the statistics that policy was evaluated with
    best_return: jax.Array  # its mean evaluation return (-inf before the first)


def init_state(
    config: TrainConfig, policy: Any, strategy: EvolutionStrategy, observation_shape: tuple
) -> TrainState:
    params = policy.init(keys.init_key(config.seed))
    stats = init_obs_stats(observation_shape)
    return TrainState(
        strategy.init(params),
        stats,
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        params,
        stats,
        jnp.array(-jnp.inf, jnp.float32),
    )


def policy_stats(config: TrainConfig, stats: Any) -> Any:
    """The statistics the policy normalizes with: none without ``normalize_obs``."""
    return stats if config.normalize_obs else None


def update(
    config: TrainConfig,
    strategy: EvolutionStrategy,
    state: TrainState,
    key: jax.Array,
    episodes: rollout.Episodes,
) -> tuple[TrainState, dict[str, jax.Array]]:
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
    strategy_state, metrics = strategy.tell(key, state.strategy_state, fitness)
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


def record_evaluation(state: TrainState, eval_returns: jax.Array) -> TrainState:
    """Keeps the mean policy (and its statistics) if its evaluation is the best so far."""
    score = jnp.mean(eval_returns)
    better = score > state.best_return
    mean = state.strategy_state.mean
    return state._replace(
        best_params=_where(better, mean, state.best_params),
        best_obs_stats=_where(better, state.obs_stats, state.best_obs_stats),
        best_return=jnp.maximum(score, state.best_return),
    )


def _renamed(metrics: dict[str, Any]) -> dict[str, Any]:
    return {name.replace("fitness_", "return_"): value for name, value in metrics.items()}


def _where(condition, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)
