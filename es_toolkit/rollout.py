"""Episode returns of a policy in a JAX environment.

An episode is a ``lax.scan`` over the environment's time limit with a done mask: after the
first ``terminated | truncated`` the state keeps stepping (JAX needs a fixed length) but
rewards, lengths and observation statistics stop counting. Everything is a pure function of
its key, so a population is evaluated with ``jax.vmap`` and a result never depends on
which device computed it.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from es_toolkit.policies import (
    ObsStats,
    init_obs_stats,
    merge_stacked_obs_stats,
    normalize,
    update_obs_stats,
)
from es_toolkit.types import PRNGKey, PyTree

Apply = Callable[[PyTree, jax.Array], jax.Array]


class Episodes(NamedTuple):
    returns: jax.Array  # (num_episodes,) float32 undiscounted returns
    lengths: jax.Array  # (num_episodes,) int32 steps until done
    obs_stats: ObsStats  # statistics of every observation the policy acted on


def episode(
    key: PRNGKey,
    env: Any,
    env_params: Any,
    apply: Apply,
    params: PyTree,
    obs_stats: ObsStats | None = None,
) -> Episodes:
    """One episode: its return, its length and the statistics of its observations.

    ``apply(params, obs)`` sees ``normalize(obs_stats, obs)`` when ``obs_stats`` is given,
    the raw observation otherwise. Returns an ``Episodes`` of a single episode (scalars).
    """
    reset_key, step_key = jax.random.split(key)
    obs, state = env.reset(reset_key, env_params)
    seen = init_obs_stats(obs.shape)

    def step(carry, step_key):
        obs, state, done, total, length, seen = carry
        policy_obs = obs if obs_stats is None else normalize(obs_stats, obs)
        action = apply(params, policy_obs)
        next_obs, state, reward, terminated, truncated, _ = env.step(
            step_key, state, action, env_params
        )
        alive = ~done
        seen = update_obs_stats(seen, obs[None], alive[None])
        total = total + jnp.where(alive, reward, 0.0)
        length = length + alive.astype(jnp.int32)
        done = done | terminated | truncated
        return (next_obs, state, done, total, length, seen), None

    max_steps = int(env_params.max_steps_in_episode)
    init = (obs, state, jnp.zeros((), bool), jnp.zeros(()), jnp.zeros((), jnp.int32), seen)
    keys = jax.random.split(step_key, max_steps)
    (_, _, _, total, length, seen), _ = jax.lax.scan(step, init, keys)
    return Episodes(total, length, seen)


def evaluate(
    key: PRNGKey,
    env: Any,
    env_params: Any,
    apply: Apply,
    params: PyTree,
    obs_stats: ObsStats | None = None,
    num_episodes: int = 1,
) -> Episodes:
    """``num_episodes`` episodes of one policy, episode ``e`` with ``fold_in(key, e)``.

    Returns per-episode returns and lengths, and the merged observation statistics.
    """
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(num_episodes))
    runs = jax.vmap(lambda k: episode(k, env, env_params, apply, params, obs_stats))(keys)
    return Episodes(runs.returns, runs.lengths, merge_stacked_obs_stats(runs.obs_stats))


def evaluate_population(
    key: PRNGKey,
    env: Any,
    env_params: Any,
    apply: Apply,
    population: PyTree,
    obs_stats: ObsStats | None = None,
    num_episodes: int = 1,
    *,
    common_random_numbers: bool = False,
    first_member: Any = 0,
    merge_stats: bool = True,
) -> Episodes:
    """Every member's mean return over ``num_episodes`` episodes.

    Member ``i`` runs its episodes with ``fold_in(key, i)``, or, with
    ``common_random_numbers``, every member uses ``key`` itself (the same initial states
    and noise), which removes that variance from their comparison. Returns ``returns`` and
    ``lengths`` of shape ``(population,)`` (mean return, total steps per member) and the
    statistics of all observations of the population (with ``merge_stats=False``, each
    member's, stacked).

    ``first_member`` is the index of ``population``'s first member in the whole population
    (a device evaluating its block of members passes its offset), so member ``i`` draws the
    same episodes wherever it is evaluated.
    """
    size = jax.tree.leaves(population)[0].shape[0]
    indices = first_member + jnp.arange(size)
    member_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
    if common_random_numbers:
        member_keys = jnp.broadcast_to(key, member_keys.shape)

    def member(k, params):
        runs = evaluate(k, env, env_params, apply, params, obs_stats, num_episodes)
        return Episodes(jnp.mean(runs.returns), jnp.sum(runs.lengths), runs.obs_stats)

    runs = jax.vmap(member)(member_keys, population)
    stats = merge_stacked_obs_stats(runs.obs_stats) if merge_stats else runs.obs_stats
    return Episodes(runs.returns, runs.lengths, stats)
