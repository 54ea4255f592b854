r"""PGPE (Sehnke et al., 2010): a per-parameter Gaussian search distribution, symmetric
sampling, and ClipUp (Toklu et al., 2020) on the center.

Members are :math:`\mu \pm \epsilon_j` with :math:`\epsilon_j = \sigma \odot z_j`,
:math:`z_j \sim N(0, I)` (``antithetic=True``, the symmetric sampling of the paper). With
shaped fitness :math:`w` (higher is better), its population mean :math:`b` as the baseline
and :math:`n_d` directions,

.. math::
    \nabla_\mu = \frac{1}{n_d} \sum_j \frac{w_j^+ - w_j^-}{2}\, \epsilon_j, \qquad
    \nabla_\sigma = \frac{1}{n_d} \sum_j \Big(\frac{w_j^+ + w_j^-}{2} - b\Big)
        \frac{\epsilon_j^2 - \sigma^2}{\sigma},

the center follows any optax optimizer on :math:`\nabla_\mu` (ClipUp by default) and

.. math::
    \sigma \leftarrow \mathrm{clip}\big(\sigma + \eta_\sigma \nabla_\sigma,\;
        (1 - c)\,\sigma,\; (1 + c)\,\sigma\big)

with :math:`c` = ``max_sigma_change`` (the relative bound of Toklu's pgpelib). Without
antithetic sampling the same two sums run over members, :math:`(w_i - b)\,\epsilon_i` and
:math:`(w_i - b)(\epsilon_i^2 - \sigma^2)/\sigma`, i.e. plain PGPE with a baseline.

Since :math:`(\epsilon^2 - \sigma^2)/\sigma = \sigma (z^2 - 1)`, both gradients are
``sigma * weighted_sum(...) / population_size`` over member weights :math:`w_i - b`, with
the noise regenerated from the key (never stored).

References:
    Sehnke, Osendorfer, Rückstieß, Graves, Peters, Schmidhuber, "Parameter-exploring policy
    gradients", Neural Networks 23(4), 2010.
    Toklu, Liskowski, Srivastava, "ClipUp: A Simple and Powerful Optimizer for
    Distribution-based Policy Evolution", PPSN 2020 (pgpelib's defaults are used here).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree

from es_toolkit import sampling as sampling_lib
from es_toolkit import shaping as shaping_lib
from es_toolkit._validate import check_int, check_positive_scalar
from es_toolkit.strategies import base
from es_toolkit.strategies.clipup import clipup
from es_toolkit.types import PRNGKey, PyTree


class PGPEState(NamedTuple):
    mean: PyTree  # the center mu, shaped like params
    sigma: PyTree  # per-parameter standard deviation, shaped like params, > 0
    opt_state: Any  # the center optimizer's state
    generation: jax.Array  # int32 scalar: tells so far


@base.rebuildable
def pgpe(
    population_size: int,
    sigma: float = 0.1,
    learning_rate: optax.ScalarOrSchedule | None = None,
    sigma_learning_rate: float = 0.1,
    *,
    optimizer: optax.GradientTransformation | None = None,
    max_sigma_change: float = 0.2,
    fitness_shaping: Any = "centered_ranks",
    antithetic: bool = True,
    chunk_size: int | None = None,
) -> base.EvolutionStrategy:
    """PGPE with symmetric sampling and adaptive per-parameter sigma.

    Args:
        population_size: members per generation (even with ``antithetic``).
        sigma: initial standard deviation of every parameter.
        learning_rate: ClipUp's step size for the center (``0.15`` by default, with
            ``max_speed = 0.3``); give either this or ``optimizer``.
        sigma_learning_rate: :math:`\\eta_\\sigma`, the step on the sigma gradient.
        optimizer: any optax optimizer for the center, replacing ClipUp.
        max_sigma_change: largest relative change of each sigma per generation, in (0, 1).
        fitness_shaping: ``"centered_ranks"`` (default), ``"z_score"``, ``"raw"``,
            ``"nes_utilities"`` or a function from fitness to weights.
        antithetic: symmetric sampling (mirrored pairs), as in Sehnke et al.
        chunk_size: members whose noise ``tell`` holds at once; ``None``: as many as fit
            ``sampling.DEFAULT_MEMORY_BUDGET`` (256 MiB) of noise, all when they fit.

    Returns:
        An :class:`~es_toolkit.strategies.EvolutionStrategy` with :class:`PGPEState`.
    """
    check_int("population_size", population_size, minimum=2)
    sampling = base.perturbation_sampling(population_size, antithetic, chunk_size)
    check_positive_scalar("sigma", sigma)
    check_positive_scalar("sigma_learning_rate", sigma_learning_rate)
    check_positive_scalar("max_sigma_change", max_sigma_change)
    if not max_sigma_change < 1:
        raise ValueError(f"max_sigma_change must be in (0, 1), got {max_sigma_change}.")
    if optimizer is not None and learning_rate is not None:
        raise ValueError(
            "give either learning_rate (for the default ClipUp) or optimizer, not both."
        )
    if optimizer is None:
        optimizer = clipup(0.15 if learning_rate is None else learning_rate)
    shape = shaping_lib.get(fitness_shaping)

    def init(params: PyTree) -> PGPEState:
        params = base.check_params(params)
        scales = jax.tree.map(lambda p: jnp.full_like(p, sigma), params)
        return PGPEState(params, scales, optimizer.init(params), jnp.zeros((), jnp.int32))

    def scale(state: PGPEState) -> PyTree:
        return state.sigma

    def tell(key: PRNGKey, state: PGPEState, fitness: jax.Array, directions: PyTree = None):
        fitness = base.check_fitness(fitness, population_size)
        weights = shape(fitness)
        weights = weights - jnp.mean(weights)  # the baseline b
        linear, squared = sampling_lib.weighted_sums(
            sampling, key, state.mean, weights, weights, directions=directions
        )
        grad_mean = jax.tree.map(lambda s, t: s * t / population_size, state.sigma, linear)
        grad_sigma = jax.tree.map(lambda s, t: s * t / population_size, state.sigma, squared)
        mean, opt_state = base.ascent_step(optimizer, state.opt_state, state.mean, grad_mean)

        def new_sigma(s, g):
            bound = max_sigma_change * s
            return jnp.clip(s + sigma_learning_rate * g, s - bound, s + bound).astype(s.dtype)

        scales = jax.tree.map(new_sigma, state.sigma, grad_sigma)
        metrics = {
            **base.fitness_metrics(fitness),
            "grad_norm": optax.tree.norm(grad_mean),
            **base.sigma_metrics(state.sigma),
        }
        return PGPEState(mean, scales, opt_state, state.generation + 1), metrics

    return base.make_strategy(init, tell, sampling, scale)
