"""Env seeds from a key: episode ``e`` of member ``i`` resets its env with a seed drawn
from ``fold_in(fold_in(key, i), e)`` (``fold_in(key, e)`` for every member with common
random numbers), the rule ``rollout`` uses for its JAX envs' keys.
"""

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit.types import PRNGKey


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
