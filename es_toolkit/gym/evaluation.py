"""Population and policy evaluation in Gymnasium envs, with ``es_toolkit.rollout``'s
contract: the same keys give the same episodes, whatever the number of workers (each
episode's env seed derives from the key, see ``_seeds``).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit.gym._seeds import episode_seeds
from es_toolkit.gym.pool import RolloutPool
from es_toolkit.policies import ObsStats, merge_stacked_obs_stats
from es_toolkit.rollout import Episodes
from es_toolkit.types import PRNGKey, PyTree


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
    of member ``i``, one row per member (``_seeds.seed_table`` computes them from the key)."""
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
