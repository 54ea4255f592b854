r"""Augmented Random Search, ARS V1 (Mania et al., 2018), without observation normalization.

Each of :math:`N` directions :math:`\delta_k \sim N(0, I)` gives the two members
:math:`\theta \pm \nu \delta_k` with returns :math:`r_k^\pm`. Keep the :math:`b` directions
with the largest :math:`\max(r_k^+, r_k^-)` and step

.. math::
    \theta \leftarrow \theta + \frac{\alpha}{b\, \sigma_R}
        \sum_{k \in \mathrm{top}\, b} (r_k^+ - r_k^-)\, \delta_k,

with :math:`\sigma_R` the standard deviation of the :math:`2b` selected returns (the step is
0 when they are all equal, where the sum vanishes too). With :math:`b = N` this is V1, with
:math:`b < N` V1-t. Non-finite returns count as the worst finite one. Observation
normalization (V2) belongs to the policy, not here.

The member weights are :math:`r_i` inside the top :math:`b` directions and 0 outside, so
``weighted_sum``'s antithetic fold :math:`w^+ - w^-` gives the sum above without storing
the population.

References:
    Mania, Guy, Recht, "Simple random search of static linear policies is competitive for
    reinforcement learning", NeurIPS 2018. https://arxiv.org/abs/1803.07055
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax.tree

from es_toolkit import sampling as sampling_lib
from es_toolkit import shaping as shaping_lib
from es_toolkit._validate import check_int, check_optional_int
from es_toolkit.strategies import base
from es_toolkit.types import PRNGKey, PyTree


class ARSState(NamedTuple):
    mean: PyTree  # theta, shaped like params
    generation: jax.Array  # int32 scalar: tells so far, drives the schedules


@base.rebuildable
def ars(
    population_size: int,
    sigma: base.Schedule = 0.02,
    learning_rate: base.Schedule = 0.02,
    *,
    top_directions: int | None = None,
    chunk_size: int | None = None,
) -> base.EvolutionStrategy:
    """ARS V1 / V1-t.

    Args:
        population_size: members per generation, ``2 * N`` for ``N`` directions (even).
        sigma: the exploration noise :math:`\\nu`, a constant or a schedule of the
            generation count.
        learning_rate: the step size :math:`\\alpha`, a constant or a schedule.
        top_directions: :math:`b`, the directions kept, in ``1 .. N``; all by default.
        chunk_size: members whose noise ``tell`` holds at once (even); ``None``: as many as
            fit ``sampling.DEFAULT_MEMORY_BUDGET`` (256 MiB) of noise, all when they fit.

    Returns:
        An :class:`~es_toolkit.strategies.EvolutionStrategy` with :class:`ARSState`.
    """
    check_int("population_size", population_size, minimum=2)
    sampling = base.perturbation_sampling(population_size, True, chunk_size)
    num_dirs = sampling_lib.num_directions(sampling)
    top = check_optional_int("top_directions", top_directions, minimum=1)
    top = num_dirs if top is None else top
    if top > num_dirs:
        raise ValueError(
            f"top_directions must be at most the number of directions "
            f"population_size // 2 = {num_dirs}, got {top}."
        )
    sigma_at = base.check_schedule("sigma", sigma)
    learning_rate_at = base.check_schedule("learning_rate", learning_rate)

    def init(params: PyTree) -> ARSState:
        return ARSState(base.check_params(params), jnp.zeros((), jnp.int32))

    def scale(state: ARSState) -> jax.Array:
        return sigma_at(state.generation)

    def tell(key: PRNGKey, state: ARSState, fitness: jax.Array, directions: PyTree = None):
        fitness = base.check_fitness(fitness, population_size)
        returns = shaping_lib.worst_for_non_finite(fitness)
        plus, minus = returns[0::2], returns[1::2]
        keep = shaping_lib.ranks(jnp.maximum(plus, minus)) >= num_dirs - top
        keep = keep.astype(returns.dtype)
        selected_mean = jnp.sum(keep * (plus + minus)) / (2 * top)
        reward_std = jnp.sqrt(
            jnp.sum(keep * ((plus - selected_mean) ** 2 + (minus - selected_mean) ** 2)) / (2 * top)
        )
        weights = jnp.repeat(keep, 2) * returns
        direction_sum = sampling_lib.weighted_sum(
            sampling, key, state.mean, weights, directions=directions
        )
        scale = jnp.where(reward_std > 0, 1.0 / (top * jnp.where(reward_std > 0, reward_std, 1)), 0)
        grad = optax.tree.scale(scale, direction_sum)
        step = learning_rate_at(state.generation)
        mean = jax.tree.map(lambda m, g: (m + step * g).astype(m.dtype), state.mean, grad)
        metrics = {
            **base.fitness_metrics(fitness),
            "grad_norm": optax.tree.norm(grad),
            "sigma": sigma_at(state.generation),
            "reward_std": reward_std,
        }
        return ARSState(mean, state.generation + 1), metrics

    return base.make_strategy(init, tell, sampling, scale)
