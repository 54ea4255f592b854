"""Population and policy evaluation in Gymnasium envs, with ``es_toolkit.rollout``'s
contract: the same keys give the same episodes, whatever the number of workers.

Episode ``e`` of member ``i`` resets its env with a seed drawn from
``fold_in(fold_in(key, i), e)`` (``fold_in(key, e)`` for every member with common random
numbers), the rule ``rollout`` uses for its JAX envs' keys.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit.gym.pool import RolloutPool
from es_toolkit.policies import ObsStats, merge_stacked_obs_stats
from es_toolkit.rollout import Episodes
from es_toolkit.types import PRNGKey, PyTree


def seed_table(
    key: PRNGKey,
    num_members: int,
    num_episodes: int,
    *,
    common_random_numbers: bool = False,
    first_member: int | jax.Array = 0,
) -> jax.Array:
    """Env seeds, int32 of shape ``(num_members, num_episodes)``, for members
    ``first_member ..`` (see the module docstring). Traceable: a training step computes
    them in the same jitted call as its ``ask``, one dispatch per generation instead of
    two."""

    def member_seeds(member_key):
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(member_key, jnp.arange(num_episodes))
        return jax.vmap(lambda k: jax.random.randint(k, (), 0, 2**31 - 1))(keys)

    if common_random_numbers:
        return jnp.broadcast_to(member_seeds(key), (num_members, num_episodes))
    indices = first_member + jnp.arange(num_members)
    member_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
    return jax.vmap(member_seeds)(member_keys)


_jitted_seed_table = jax.jit(
    seed_table, static_argnames=("num_members", "num_episodes", "common_random_numbers")
)


def episode_seeds(
    key: PRNGKey,
    num_members: int,
    num_episodes: int,
    *,
    common_random_numbers: bool = False,
    first_member: int = 0,
) -> np.ndarray:
    """``seed_table`` as a NumPy array."""
    return np.asarray(
        _jitted_seed_table(
            key,
            num_members=num_members,
            num_episodes=num_episodes,
            common_random_numbers=common_random_numbers,
            first_member=first_member,
        )
    )


def evaluate_population(
    pool: RolloutPool,
    key: PRNGKey,
    population: PyTree,
    obs_stats: ObsStats | None = None,
    num_episodes: int = 1,
    *,
    common_random_numbers: bool = False,
    first_member: int = 0,
    merge_stats: bool = True,
) -> Episodes:
    """Every member's mean return over ``num_episodes`` episodes, as
    ``rollout.evaluate_population`` returns it: ``returns`` (mean per member), ``lengths``
    (total steps per member) and the statistics of all observations (with
    ``merge_stats=False``, each episode's, stacked).

    ``first_member`` is the index of ``population``'s first member in the whole population
    (a process evaluating its share passes its offset): member ``i`` gets the same seeds
    wherever it runs."""
    size = jax.tree.leaves(population)[0].shape[0]
    seeds = episode_seeds(
        key,
        size,
        num_episodes,
        common_random_numbers=common_random_numbers,
        first_member=first_member,
    )
    return run_population(
        pool, population, seeds, obs_stats, first_member=first_member, merge_stats=merge_stats
    )


def run_population(
    pool: RolloutPool,
    population: PyTree,
    seeds: Any,
    obs_stats: ObsStats | None = None,
    *,
    first_member: int = 0,
    merge_stats: bool = True,
) -> Episodes:
    """``evaluate_population`` with the seeds given: ``seeds[i, e]`` resets episode ``e``
    of member ``i``, one row per member (``seed_table`` computes them from the key)."""
    size = jax.tree.leaves(population)[0].shape[0]
    seeds = np.asarray(seeds, np.int64)
    if seeds.ndim != 2 or seeds.shape[0] != size or seeds.shape[1] < 1:
        raise ValueError(
            f"seeds must have shape (members, episodes) = ({size}, episodes >= 1), "
            f"got {seeds.shape}."
        )
    num_episodes = seeds.shape[1]
    rows = np.repeat(np.arange(size), num_episodes)
    runs = pool.run(population, first_member + rows, seeds.reshape(-1), obs_stats, rows=rows)
    returns = runs.returns.reshape(size, num_episodes).mean(axis=1)
    lengths = runs.lengths.reshape(size, num_episodes).sum(axis=1)
    return Episodes(
        returns, lengths, merge_episode_stats(runs.obs_stats) if merge_stats else runs.obs_stats
    )


def evaluate(
    pool: RolloutPool,
    key: PRNGKey,
    params: PyTree,
    obs_stats: ObsStats | None = None,
    num_episodes: int = 1,
) -> Episodes:
    """``num_episodes`` episodes of one policy, spread over the workers: per-episode
    returns and lengths, and the merged observation statistics."""
    seeds = episode_seeds(key, 1, num_episodes)[0]
    population = jax.tree.map(lambda leaf: np.asarray(leaf)[None], params)
    runs = pool.run(population, np.zeros(num_episodes, np.int64), seeds, obs_stats)
    return Episodes(runs.returns, runs.lengths, merge_episode_stats(runs.obs_stats))


@jax.jit
def merge_episode_stats(stacked: Any) -> ObsStats:
    """The statistics of all observations from per-episode statistics stacked by workers
    (float64 NumPy arrays), as the float32 ``ObsStats`` training keeps."""
    return merge_stacked_obs_stats(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), stacked))
