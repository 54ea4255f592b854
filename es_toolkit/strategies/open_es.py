r"""OpenAI-ES (Salimans et al., 2017): Gaussian perturbations, shaped fitness, any optax
optimizer.

The search gradient of :math:`J(\mu) = \mathbb{E}_z F(\mu + \sigma z)` is estimated as

.. math::
    \hat g = \frac{1}{n \sigma} \sum_{i=1}^n w_i z_i, \qquad w = \mathrm{shape}(F),

which, with raw fitness minus the baseline :math:`F(\mu)`, is exactly ``jax.grad`` of
``make_perturbed_fun(F, n, sigma, Normal())``: the transform drives this loop.
"""

from typing import Any, NamedTuple

import jax
import optax
import optax.tree

from es_toolkit import sampling as sampling_lib
from es_toolkit import shaping as shaping_lib
from es_toolkit._validate import check_int
from es_toolkit.strategies import base
from es_toolkit.types import PRNGKey, PyTree


class OpenESState(NamedTuple):
    mean: PyTree  # the search distribution's center, shaped like params
    opt_state: Any  # the optax optimizer's state
    generation: jax.Array  # int32 scalar: tells so far, drives the sigma schedule


@base.rebuildable
def open_es(
    population_size: int,
    sigma: base.Schedule = 0.02,
    learning_rate: optax.ScalarOrSchedule | None = None,
    *,
    optimizer: optax.GradientTransformation | None = None,
    fitness_shaping: Any = "centered_ranks",
    weight_decay: float = 0.0,
    antithetic: bool = True,
    chunk_size: int | None = None,
) -> base.EvolutionStrategy:
    """OpenAI-ES.

    Args:
        population_size: members per generation (even with ``antithetic``).
        sigma: perturbation scale, a constant or a schedule of the generation count.
        learning_rate: Adam's step size for the mean (``0.01`` by default); give either
            this or ``optimizer``.
        optimizer: any optax optimizer applied to the (negated) search gradient, replacing
            Adam.
        fitness_shaping: ``"centered_ranks"`` (default), ``"z_score"``, ``"raw"`` or a
            function from fitness to weights.
        weight_decay: L2 coefficient pulling the mean toward 0 (as in Salimans et al.).
        antithetic: mirrored pairs of perturbations.
        chunk_size: members whose noise ``tell`` holds at once; ``None``: as many as fit
            ``sampling.DEFAULT_MEMORY_BUDGET`` (256 MiB) of noise, all when they fit.

    Returns:
        An :class:`~es_toolkit.strategies.EvolutionStrategy`.
    """
    check_int("population_size", population_size, minimum=2)
    sampling = base.perturbation_sampling(population_size, antithetic, chunk_size)
    sigma_at = base.check_schedule("sigma", sigma)
    if optimizer is not None and learning_rate is not None:
        raise ValueError("give either learning_rate (for the default Adam) or optimizer, not both.")
    if optimizer is None:
        optimizer = optax.adam(0.01 if learning_rate is None else learning_rate)
    shape = shaping_lib.get(fitness_shaping)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")

    def init(params: PyTree) -> OpenESState:
        params = base.check_params(params)
        return OpenESState(params, optimizer.init(params), jax.numpy.zeros((), jax.numpy.int32))

    def scale(state: OpenESState) -> jax.Array:
        return sigma_at(state.generation)

    def tell(key: PRNGKey, state: OpenESState, fitness: jax.Array, directions: PyTree = None):
        fitness = base.check_fitness(fitness, population_size)
        sigma_now = sigma_at(state.generation)
        weights = shape(fitness)
        noise_sum = sampling_lib.weighted_sum(
            sampling, key, state.mean, weights, directions=directions
        )
        grad = optax.tree.scale(1.0 / (population_size * sigma_now), noise_sum)
        if weight_decay:
            grad = optax.tree.add_scale(grad, -weight_decay, state.mean)
        mean, opt_state = base.ascent_step(optimizer, state.opt_state, state.mean, grad)
        metrics = {
            **base.fitness_metrics(fitness),
            "grad_norm": optax.tree.norm(grad),
            "sigma": sigma_now,
        }
        return OpenESState(mean, opt_state, state.generation + 1), metrics

    return base.make_strategy(init, tell, sampling, scale)
