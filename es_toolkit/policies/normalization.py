"""Running observation statistics and normalization, as in OpenAI ES and ARS V2.

Policies see ``normalize(stats, obs)`` instead of ``obs``: each feature is standardized by
the mean and variance of every observation seen so far during training, and clipped. The
statistics are not optimized (they are not part of ``params``) but are saved with them, and
must be used unchanged at evaluation time.

``ObsStats`` holds a count, a mean and ``m2``, the sum of squared deviations from the mean
(Welford). Two statistics merge exactly with the parallel formula of Chan et al. (1979)::

    n = n_a + n_b,   delta = mean_b - mean_a
    mean = mean_a + delta * n_b / n
    m2 = m2_a + m2_b + delta**2 * n_a * n_b / n

so each population member (or device, or host) can summarize its own rollouts with
``update_obs_stats(init_obs_stats(shape), observations, mask)``, and the partial
statistics gathered over the whole population merge, in any order or grouping, into the
statistics of all observations (up to float rounding); ``merge_stacked_obs_stats`` does
that for statistics stacked along a leading axis (``jax.vmap`` or ``all_gather`` output).

Counts are float32: exact up to 2**24 observations, then rounded like any float.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from es_toolkit._validate import check_positive_scalar
from es_toolkit.types import Shape


class ObsStats(NamedTuple):
    """Statistics of the observations seen so far (a pytree of float32 arrays)."""

    count: jax.Array  # () number of observations (sum of the mask weights)
    mean: jax.Array  # shape: per-feature mean
    m2: jax.Array  # shape: per-feature sum of squared deviations from the mean

    @property
    def shape(self) -> Shape:
        """The shape of one observation."""
        return tuple(self.mean.shape)

    @property
    def var(self) -> jax.Array:
        """Per-feature population variance ``m2 / count`` (1 before any observation)."""
        return jnp.where(self.count > 0, self.m2 / jnp.maximum(self.count, 1e-30), 1.0)


def init_obs_stats(shape: int | Shape) -> ObsStats:
    """Empty statistics for observations of the given shape."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    zeros = jnp.zeros(shape, jnp.float32)
    return ObsStats(jnp.zeros((), jnp.float32), zeros, zeros)


def merge_obs_stats(a: ObsStats, b: ObsStats) -> ObsStats:
    """The statistics of the union of ``a``'s and ``b``'s observations (Chan et al.)."""
    count = a.count + b.count
    safe = jnp.where(count > 0, count, 1.0)
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / safe)
    m2 = a.m2 + b.m2 + delta**2 * (a.count * b.count / safe)
    return ObsStats(count, mean, m2)


def merge_stacked_obs_stats(stacked: ObsStats) -> ObsStats:
    """Merges statistics stacked along a leading axis (count ``(m,)``, mean ``(m, *shape)``).

    The multi-way form of Chan et al.'s formula: sums over the axis, so the result does not
    depend on the order of the statistics (up to float rounding).
    """
    counts = stacked.count.reshape(stacked.count.shape + (1,) * (stacked.mean.ndim - 1))
    count = jnp.sum(stacked.count)
    safe = jnp.where(count > 0, count, 1.0)
    mean = jnp.sum(counts * stacked.mean, axis=0) / safe
    spread = jnp.sum(counts * (stacked.mean - mean) ** 2, axis=0)
    return ObsStats(count, mean, jnp.sum(stacked.m2, axis=0) + spread)


def batch_obs_stats(shape: int | Shape, batch: jax.Array, mask: jax.Array | None = None):
    """The statistics of one batch alone; ``update_obs_stats`` merges them into others.

    Args:
        shape: the shape of one observation.
        batch: observations of shape ``(*batch_dims, *shape)``, any number of batch dims
            (e.g. ``(time, d)`` for one episode or ``(population, time, d)``).
        mask: optional weights of shape ``batch_dims``: 1 for a real observation, 0 for a
            step after the episode ended (ignored). Booleans work too.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    batch = jnp.asarray(batch, jnp.float32)
    batch_dims = batch.shape[: batch.ndim - len(shape)]
    if batch.ndim < len(shape) or batch.shape[batch.ndim - len(shape) :] != shape:
        raise ValueError(
            f"observations must have shape (*batch_dims, *{shape}), got {batch.shape}."
        )
    x = batch.reshape((-1, *shape))
    if mask is None:
        weights = jnp.ones(x.shape[0], jnp.float32)
    else:
        if jnp.shape(mask) != batch_dims:
            raise ValueError(
                f"mask must have the batch shape {batch_dims} of observations {batch.shape}, "
                f"got {jnp.shape(mask)}."
            )
        weights = jnp.asarray(mask, jnp.float32).reshape(-1)
    weights = weights.reshape((-1,) + (1,) * len(shape))
    count = jnp.sum(weights)
    safe = jnp.where(count > 0, count, 1.0)
    # Masked rows may hold anything (even inf or NaN): select, do not multiply, them away.
    mean = jnp.sum(jnp.where(weights > 0, weights * x, 0.0), axis=0) / safe
    m2 = jnp.sum(jnp.where(weights > 0, weights * (x - mean) ** 2, 0.0), axis=0)
    return ObsStats(count, mean, m2)


def update_obs_stats(stats: ObsStats, batch: jax.Array, mask: jax.Array | None = None):
    """``stats`` updated with a batch of observations (see ``batch_obs_stats``)."""
    return merge_obs_stats(stats, batch_obs_stats(stats.shape, batch, mask))


def normalize(
    stats: ObsStats, obs: jax.Array, clip: float | None = 5.0, eps: float = 1e-8
) -> jax.Array:
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)``, feature by feature.

    ``obs`` has shape ``(*batch_dims, *stats.shape)``. Before any observation was counted
    (``count == 0``) it returns ``obs`` unchanged (as float32). ``clip=None`` disables
    clipping.

    >>> stats = update_obs_stats(init_obs_stats(2), jnp.array([[0.0, 1.0], [2.0, 3.0]]))
    >>> stats.mean, stats.var
    (Array([1., 2.], dtype=float32), Array([1., 1.], dtype=float32))
    >>> normalize(stats, jnp.array([2.0, -100.0]))
    Array([ 1., -5.], dtype=float32)
    """
    if clip is not None:
        check_positive_scalar("clip", clip)
    obs = jnp.asarray(obs, jnp.float32)
    shape = stats.shape
    if obs.ndim < len(shape) or obs.shape[obs.ndim - len(shape) :] != shape:
        raise ValueError(
            f"observation has shape {obs.shape}, but the statistics are for shape {shape}."
        )
    standardized = (obs - stats.mean) / jnp.sqrt(stats.var + eps)
    if clip is not None:
        standardized = jnp.clip(standardized, -clip, clip)
    return jnp.where(stats.count > 0, standardized, obs)
