"""Fitness shaping: from raw fitness (higher is better) to the weights of an ES update.

Every function maps a ``(population_size,)`` fitness vector to weights of the same shape
and treats non-finite fitness (NaN, +-inf, e.g. from a diverged rollout) as the worst in the
population, so one bad member never poisons an update.
"""

import jax
import jax.numpy as jnp


def worst_for_non_finite(fitness: jax.Array) -> jax.Array:
    """Replaces non-finite fitness by the smallest finite value (0 if none is finite)."""
    finite = jnp.isfinite(fitness)
    floor = jnp.min(jnp.where(finite, fitness, jnp.inf))
    floor = jnp.where(jnp.any(finite), floor, 0.0)
    return jnp.where(finite, fitness, floor)


def ranks(fitness: jax.Array) -> jax.Array:
    """Ranks from 0 (worst) to n - 1 (best); non-finite values rank below every finite one.

    Tied values share their average rank, so equal fitness carries no preference: a
    population that scores the same everywhere (a plateau) gives all-zero centered ranks
    and leaves the mean where it is.
    """
    finite = jnp.isfinite(fitness)
    sortable = jnp.where(finite, fitness, -jnp.inf)
    return jax.scipy.stats.rankdata(sortable, method="average") - 1.0


def centered_ranks(fitness: jax.Array) -> jax.Array:
    """Ranks scaled to [-0.5, 0.5] (Salimans et al., 2017); mean 0."""
    n = fitness.shape[0]
    return ranks(fitness) / max(n - 1, 1) - 0.5


def z_score(fitness: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Standardized fitness, mean 0 and standard deviation 1 (0 when all are equal)."""
    fitness = worst_for_non_finite(fitness)
    return (fitness - jnp.mean(fitness)) / (jnp.std(fitness) + eps)


def raw(fitness: jax.Array) -> jax.Array:
    """Fitness unchanged, except non-finite values replaced by the worst finite one."""
    return worst_for_non_finite(fitness)


def nes_utilities(fitness: jax.Array) -> jax.Array:
    """Rank-based utilities of natural ES (Wierstra et al., 2014), summing to 0.

    The best member gets the largest weight, the worse half gets ``-1/n``; equal fitness
    everywhere gives all-zero utilities.
    """
    n = fitness.shape[0]
    position = ranks(fitness)
    best_first = n - position  # 1 for the best; tied members share a position
    raw_utility = jnp.maximum(0.0, jnp.log(n / 2 + 1) - jnp.log(best_first))
    utility = raw_utility / jnp.sum(raw_utility) - 1.0 / n
    return jnp.where(jnp.all(position == position[0]), 0.0, utility)


SHAPINGS = {
    "centered_ranks": centered_ranks,
    "z_score": z_score,
    "raw": raw,
    "nes_utilities": nes_utilities,
}


def get(name_or_fn):
    """A shaping function from its name or itself; a clear error for unknown names."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in SHAPINGS:
        raise ValueError(
            f"fitness_shaping must be one of {sorted(SHAPINGS)} or a function, got {name_or_fn!r}."
        )
    return SHAPINGS[name_or_fn]
