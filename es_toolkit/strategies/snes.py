r"""Separable natural evolution strategies, SNES (Schaul et al., 2011; Wierstra et al., 2014).

Members are :math:`x_i = \mu + \sigma \odot z_i`, :math:`z_i \sim N(0, I)`, with a
per-parameter :math:`\sigma`. With rank-based utilities :math:`u` (``nes_utilities``: they
sum to 0, higher fitness gets more), the natural gradients in the local coordinates are

.. math::
    \nabla_\mu J = \sum_i u_i z_i, \qquad \nabla_\sigma J = \sum_i u_i (z_i^2 - 1),

and the search distribution moves as

.. math::
    \mu \leftarrow \mu + \eta_\mu\, \sigma \odot \nabla_\mu J, \qquad
    \sigma \leftarrow \sigma \odot \exp\big(\tfrac{\eta_\sigma}{2} \nabla_\sigma J\big),

with :math:`\eta_\mu = 1` and :math:`\eta_\sigma = (3 + \log d) / (5 \sqrt d)`, :math:`d` the
number of parameters. The exponential keeps :math:`\sigma > 0`. Both sums come from
``weighted_sums`` (plain and squared, in one pass), which regenerates the noise from the key.

References:
    Schaul, Glasmachers, Schmidhuber, "High dimensions and heavy tails for natural
    evolution strategies", GECCO 2011.
    Wierstra, Schaul, Glasmachers, Sun, Peters, Schmidhuber, "Natural Evolution
    Strategies", JMLR 15, 2014.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree

from es_toolkit import sampling as sampling_lib
from es_toolkit import shaping as shaping_lib
from es_toolkit._validate import check_int, check_positive_scalar
from es_toolkit.strategies import base
from es_toolkit.types import PRNGKey, PyTree


class SNESState(NamedTuple):
    mean: PyTree  # mu, shaped like params
    sigma: PyTree  # per-parameter standard deviation, shaped like params, > 0
    generation: jax.Array  # int32 scalar: tells so far


def default_sigma_learning_rate(num_params: int) -> float:
    """Schaul et al.'s :math:`(3 + \\log d) / (5 \\sqrt d)` for ``d`` parameters."""
    return (3 + math.log(num_params)) / (5 * math.sqrt(num_params))


@base.rebuildable
def snes(
    population_size: int,
    sigma: float = 1.0,
    learning_rate: float = 1.0,
    *,
    sigma_learning_rate: float | None = None,
    fitness_shaping: Any = "nes_utilities",
    antithetic: bool = False,
    chunk_size: int | None = None,
) -> base.EvolutionStrategy:
    """SNES.

    Args:
        population_size: members per generation (even with ``antithetic``); Schaul et al.
            suggest ``4 + floor(3 log d)``.
        sigma: initial standard deviation of every parameter.
        learning_rate: :math:`\\eta_\\mu`, the mean's step.
        sigma_learning_rate: :math:`\\eta_\\sigma`; by default
            :func:`default_sigma_learning_rate` of the number of parameters.
        fitness_shaping: ``"nes_utilities"`` (default), ``"centered_ranks"``,
            ``"z_score"``, ``"raw"`` or a function from fitness to weights.
        antithetic: mirrored pairs of perturbations.
        chunk_size: members whose noise ``tell`` holds at once; ``None``: as many as fit
            ``sampling.DEFAULT_MEMORY_BUDGET`` (256 MiB) of noise, all when they fit.

    Returns:
        An :class:`~es_toolkit.strategies.EvolutionStrategy` with :class:`SNESState`.
    """
    check_int("population_size", population_size, minimum=2)
    sampling = base.perturbation_sampling(population_size, antithetic, chunk_size)
    check_positive_scalar("sigma", sigma)
    check_positive_scalar("learning_rate", learning_rate)
    if sigma_learning_rate is not None:
        check_positive_scalar("sigma_learning_rate", sigma_learning_rate)
    shape = shaping_lib.get(fitness_shaping)

    def init(params: PyTree) -> SNESState:
        params = base.check_params(params)
        scales = jax.tree.map(lambda p: jnp.full_like(p, sigma), params)
        return SNESState(params, scales, jnp.zeros((), jnp.int32))

    def scale(state: SNESState) -> PyTree:
        return state.sigma

    def tell(key: PRNGKey, state: SNESState, fitness: jax.Array, directions: PyTree = None):
        fitness = base.check_fitness(fitness, population_size)
        utilities = shape(fitness)
        eta_sigma = sigma_learning_rate
        if eta_sigma is None:
            eta_sigma = default_sigma_learning_rate(sampling_lib.flat_size(state.mean))
        grad_z, grad_log = sampling_lib.weighted_sums(
            sampling, key, state.mean, utilities, utilities, directions=directions
        )
        grad_mean = jax.tree.map(lambda s, g: s * g, state.sigma, grad_z)
        mean = jax.tree.map(
            lambda m, g: (m + learning_rate * g).astype(m.dtype), state.mean, grad_mean
        )
        new_sigma = jax.tree.map(
            lambda s, g: (s * jnp.exp(0.5 * eta_sigma * g)).astype(s.dtype), state.sigma, grad_log
        )
        metrics = {
            **base.fitness_metrics(fitness),
            "grad_norm": optax.tree.norm(grad_mean),
            **base.sigma_metrics(state.sigma),
        }
        return SNESState(mean, new_sigma, state.generation + 1), metrics

    return base.make_strategy(init, tell, sampling, scale)
