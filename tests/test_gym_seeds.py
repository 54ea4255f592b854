"""Env seeds from a key (``es_toolkit.gym._seeds``)."""

import jax
import numpy as np

from es_toolkit.gym._seeds import episode_seeds, seed_table


def test_common_random_numbers_share_seeds():
    seeds = episode_seeds(jax.random.key(0), 3, 4, common_random_numbers=True)
    assert (seeds == seeds[0]).all()
    assert len(set(seeds[0])) == 4
    independent = episode_seeds(jax.random.key(0), 3, 4)
    assert len(set(independent.ravel())) == 12


def test_seed_table_traced_gives_episode_seeds():
    key = jax.random.key(2)
    for shared in (False, True):

        @jax.jit
        def traced(key, first, shared=shared):
            return seed_table(key, 3, 2, common_random_numbers=shared, first_member=first)

        np.testing.assert_array_equal(
            traced(key, 5),
            episode_seeds(key, 3, 2, common_random_numbers=shared, first_member=5),
        )
