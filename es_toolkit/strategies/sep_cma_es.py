r"""Separable CMA-ES, sep-CMA-ES (Ros and Hansen, 2008): a diagonal covariance matrix, so
time and memory are O(d) per member.

Members are :math:`x_i = m + \sigma \sqrt{c} \odot z_i`, :math:`z_i \sim N(0, I)`, with
:math:`c` the diagonal of :math:`C`. Ranked best first (:math:`z_{i:\lambda}`), with the
weights of Hansen's tutorial (:math:`\sum_{i \le \mu} w_i = 1`, negative :math:`w_i` for
the worse half, "active" CMA) and :math:`z_w = \sum_{i \le \mu} w_i z_{i:\lambda}`, one
generation is

.. math::
    m &\leftarrow m + c_m \sigma \sqrt c \odot z_w \\
    p_\sigma &\leftarrow (1 - c_\sigma) p_\sigma + \sqrt{c_\sigma (2 - c_\sigma) \mu_\mathrm{eff}}
        \, z_w \\
    p_c &\leftarrow (1 - c_c) p_c + h_\sigma \sqrt{c_c (2 - c_c) \mu_\mathrm{eff}}
        \, \sqrt c \odot z_w \\
    c &\leftarrow (1 + c_1 \delta(h_\sigma) - c_1 - c_\mu \textstyle\sum_{j=1}^\lambda w_j)\, c
        + c_1 p_c^2 + c_\mu\, c \odot \sum_{i=1}^\lambda w^\circ_i z_{i:\lambda}^2 \\
    \sigma &\leftarrow \sigma \exp\Big(\min\Big(1, \frac{c_\sigma}{d_\sigma}
        \Big(\frac{\|p_\sigma\|}{E\|N(0, I)\|} - 1\Big)\Big)\Big)

(squares elementwise), where :math:`w^\circ_i = w_i` for :math:`w_i \ge 0` and
:math:`w_i\, d / \|z_{i:\lambda}\|^2` otherwise, :math:`\delta(h_\sigma) = (1 - h_\sigma)
c_c (2 - c_c)`, and :math:`h_\sigma = 1` while :math:`\|p_\sigma\| / \sqrt{1 - (1 -
c_\sigma)^{2(g + 1)}} < (1.4 + 2 / (d + 1)) E\|N(0, I)\|`. The constants are full
CMA-ES's (:func:`separable_parameters`) except the covariance learning rates, which Ros and
Hansen multiply by :math:`(d + 2) / 3`: a diagonal has d free parameters, not
:math:`d (d + 1) / 2`, and can be learned that much faster. Ranking is CMA-ES's:
non-finite fitness last, ties in the members' order.

Both sums come from one sweep over the population that regenerates the noise from the
key chunk by chunk (or uses ``directions``), so memory is O(chunk * d). The state is
pytrees shaped like the parameters (float64 under ``jax_enable_x64`` for float64
parameters).

Differences from the 2008 paper: the tutorial's constants and its active update (negative
weights for the worse half, capped by :math:`\alpha^-_\mathrm{posdef}` so that every
variance stays positive), where the paper had positive weights only and the 2008 learning
rate; the step size grows by at most a factor :math:`e` per generation, as in pycma (it
cannot shrink by more than :math:`e^{-c_\sigma / d_\sigma}` anyway).
pycma's ``CMA_diagonal`` differs in its own closed forms for :math:`c_1, c_\mu, c_c`
and drops :math:`\alpha^-_\mathrm{posdef}`.

``stop`` applies pycma's termination criteria
(:mod:`~es_toolkit.strategies.termination`) to :math:`C = \mathrm{diag}(c)`.

References:
    Ros, Hansen, "A Simple Modification in CMA-ES Achieving Linear Time and Space
    Complexity", PPSN X, 2008.
    Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772, 2016.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree
from jax.flatten_util import ravel_pytree

from es_toolkit import population_shard
from es_toolkit import sampling as sampling_lib
from es_toolkit._validate import check_int, check_positive_scalar
from es_toolkit.strategies import base, termination
from es_toolkit.strategies.cma_es import CMAParameters, default_parameters, ranks, state_dtype
from es_toolkit.types import PRNGKey, PyTree


class SepCMAESState(NamedTuple):
    mean: PyTree  # m, shaped like params
    sigma: jax.Array  # scalar step size, > 0, in the params' dtype (at least float32)
    diagonal: PyTree  # c, the diagonal of C, shaped like params, > 0
    path_sigma: PyTree  # p_sigma, the conjugate evolution path, shaped like params
    path_c: PyTree  # p_c, the evolution path of C, shaped like params
    generation: jax.Array  # int32 scalar: tells so far
    history: termination.FitnessHistory  # what the termination criteria remember


def separable_parameters(num_params: int, population_size: int) -> CMAParameters:
    r"""CMA-ES's constants (:func:`~es_toolkit.strategies.cma_es.default_parameters`, the
    tutorial's Table 1) with the covariance learning rates of Ros and Hansen,

    .. math::
        c_1 \leftarrow \frac{d + 2}{3} c_1, \qquad
        c_\mu \leftarrow \min\Big(1 - c_1, \frac{d + 2}{3} c_\mu\Big),

    and the negative weights scaled again for these rates: they sum to
    :math:`-\min(1 + c_1 / c_\mu, 1 + 2 \mu^-_\mathrm{eff} / (\mu_\mathrm{eff} + 2),
    (1 - c_1 - c_\mu) / (d c_\mu))`, the last of which keeps every variance positive.
    (``eigen_interval`` does not apply: there is nothing to decompose.)
    """
    n = num_params
    p = default_parameters(n, population_size)
    c_1 = (n + 2) / 3 * p.c_1  # < 1 for every d >= 1
    c_mu = min(1 - c_1, (n + 2) / 3 * p.c_mu)
    # The shape of the negative weights is the raw w'_i's: default_parameters' own may all
    # be 0 (when c_1 + c_mu = 1 there), which would leave nothing to rescale.
    raw = np.log((population_size + 1) / 2) - np.log(np.arange(1, population_size + 1))
    negative = raw[p.mu :]
    mueff_minus = negative.sum() ** 2 / np.sum(negative**2)
    alphas = [1 + 2 * mueff_minus / (p.mueff + 2)]
    if c_mu > 0:
        alphas += [1 + c_1 / c_mu, (1 - c_1 - c_mu) / (n * c_mu)]
    weights = np.concatenate([p.weights[: p.mu], min(alphas) * negative / -negative.sum()])
    return p._replace(weights=weights, c_1=c_1, c_mu=c_mu)


@base.rebuildable
def sep_cma_es(
    population_size: int,
    sigma: float = 1.0,
    *,
    chunk_size: int | None = None,
    tolfun: float | None = 1e-11,
    tolfunhist: float | None = 1e-12,
    tolx: float | None = 1e-11,
    tolstagnation: int | str | None = "default",
    tolconditioncov: float | None = 1e14,
    noeffectaxis: bool = True,
    noeffectcoord: bool = True,
    tolflatfitness: int | None = 1,
    tolupsigma: float | None = 1e20,
) -> base.EvolutionStrategy:
    """sep-CMA-ES.

    Args:
        population_size: :math:`\\lambda`, members per generation (at least 2);
            :func:`~es_toolkit.strategies.cma_es_default_population_size` gives the usual
            default :math:`4 + \\lfloor 3 \\ln d \\rfloor`.
        sigma: the initial step size :math:`\\sigma` (the diagonal starts at ones).
        chunk_size: members whose noise ``tell`` holds at once; ``None``: as many as fit
            ``sampling.DEFAULT_MEMORY_BUDGET`` (256 MiB) of noise, all when they fit.
        tolfun, tolfunhist, tolx, tolstagnation, tolconditioncov: pycma's termination
            criteria and defaults (see :mod:`~es_toolkit.strategies.termination`), which
            ``stop`` applies after every generation; ``None`` (``False`` for the
            ``noeffect`` flags) switches one off. With a diagonal :math:`C` the coordinate
            standard deviations are :math:`\\sqrt c`, the principal axes the coordinate
            axes, and the condition number :math:`\\max c / \\min c`.
        noeffectaxis, noeffectcoord, tolflatfitness, tolupsigma: more of pycma's
            termination criteria, as above.

    Returns:
        An :class:`~es_toolkit.strategies.EvolutionStrategy` with :class:`SepCMAESState`.
    """
    check_int("population_size", population_size, minimum=2)
    check_positive_scalar("sigma", sigma)
    sampling = base.perturbation_sampling(population_size, False, chunk_size)
    criteria = termination.criteria(
        tolfun=tolfun,
        tolfunhist=tolfunhist,
        tolx=tolx,
        tolstagnation=tolstagnation,
        tolconditioncov=tolconditioncov,
        noeffectaxis=noeffectaxis,
        noeffectcoord=noeffectcoord,
        tolflatfitness=tolflatfitness,
        tolupsigma=tolupsigma,
    )

    def stagnation(n: int) -> int | None:
        return termination.resolve_tolstagnation(criteria.tolstagnation, n, population_size)

    def init(params: PyTree) -> SepCMAESState:
        params = jax.tree.map(jnp.asarray, base.check_params(params))  # canonical dtypes
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, base.field_dtype(p)), params)
        ones = jax.tree.map(lambda p: jnp.ones(p.shape, base.field_dtype(p)), params)
        dtype = state_dtype(params)
        n = sampling_lib.flat_size(params)
        history = termination.init_history(n, population_size, dtype, stagnation(n))
        generation = jnp.zeros((), jnp.int32)
        step = jnp.asarray(sigma, dtype)
        return SepCMAESState(params, step, ones, zeros, zeros, generation, history)

    def scale(state: SepCMAESState) -> PyTree:
        return jax.tree.map(
            lambda m, c: (state.sigma * jnp.sqrt(c)).astype(m.dtype), state.mean, state.diagonal
        )

    def tell(key: PRNGKey, state: SepCMAESState, fitness: jax.Array, directions: PyTree = None):
        fitness = base.check_fitness(fitness, population_size)
        n = sampling_lib.flat_size(state.mean)
        p = separable_parameters(n, population_size)
        weights = jnp.asarray(p.weights, state.sigma.dtype)[ranks(fitness)]
        z_w, z_squares = _weighted_sums(sampling, key, state.mean, weights, directions)

        def mix(old, new, rate):  # (1 - rate) old + new, in old's dtype
            return jax.tree.map(lambda a, b: ((1 - rate) * a + b).astype(a.dtype), old, new)

        entry = math.sqrt(p.c_sigma * (2 - p.c_sigma) * p.mueff)
        path_sigma = mix(state.path_sigma, optax.tree.scale(entry, z_w), p.c_sigma)
        norm = optax.tree.norm(path_sigma)
        unbias = jnp.sqrt(1 - (1 - p.c_sigma) ** (2.0 * (state.generation + 1)))
        h_sigma = (norm / unbias < (1.4 + 2 / (n + 1)) * p.chi_n).astype(norm.dtype)
        y_w = jax.tree.map(lambda c, z: jnp.sqrt(c) * z, state.diagonal, z_w)
        mean = jax.tree.map(lambda m, y: (m + state.sigma * y).astype(m.dtype), state.mean, y_w)
        entry = h_sigma * math.sqrt(p.c_c * (2 - p.c_c) * p.mueff)
        path_c = mix(state.path_c, optax.tree.scale(entry, y_w), p.c_c)
        stall = (1 - h_sigma) * p.c_c * (2 - p.c_c)
        decay = 1 + p.c_1 * stall - p.c_1 - p.c_mu * float(np.sum(p.weights))
        diagonal = jax.tree.map(
            lambda c, pc, s: _positive(decay * c + p.c_1 * pc**2 + p.c_mu * c * s).astype(c.dtype),
            state.diagonal,
            path_c,
            z_squares,
        )
        log_step = jnp.minimum(1.0, p.c_sigma / p.d_sigma * (norm / p.chi_n - 1))
        sigma = _positive(state.sigma * jnp.exp(log_step)).astype(state.sigma.dtype)
        history = termination.update_history(state.history, fitness, stagnation(n))
        generation = state.generation + 1
        new = SepCMAESState(mean, sigma, diagonal, path_sigma, path_c, generation, history)
        metrics = {  # of the distribution the members were drawn from
            **base.fitness_metrics(fitness),
            "grad_norm": state.sigma * optax.tree.norm(y_w),  # length of the mean's step
            "sigma": state.sigma,
            "axis_ratio": _axis_ratio(state.diagonal),
        }
        return new, metrics

    def stop(state: SepCMAESState) -> jax.Array:
        flat_mean = ravel_pytree(state.mean)[0]
        stds = ravel_pytree(jax.tree.map(jnp.sqrt, state.diagonal))[0]
        n = flat_mean.size
        axis = jnp.where(jnp.arange(n) == state.generation % n, stds, 0)  # B = I
        distribution = termination.Distribution(
            mean=flat_mean,
            sigma=state.sigma,
            p_c=ravel_pytree(state.path_c)[0],
            stds=stds,
            scales=stds,
            axis=axis,
        )
        return termination.reason(
            criteria,
            state.history,
            distribution,
            num_params=n,
            population_size=population_size,
            sigma0=sigma,
        )

    return base.make_strategy(init, tell, sampling, scale, stop=stop)


def _weighted_sums(
    sampling: sampling_lib.Sampling,
    key: PRNGKey,
    like: PyTree,
    weights: jax.Array,
    directions: PyTree | None,
) -> tuple[PyTree, PyTree]:
    r""":math:`(\sum_i \max(w_i, 0)\, z_i, \sum_i w^\circ_i z_i^2)` over the members
    (``weights`` by member), in one sweep (chunked, sharded) over the regenerated noise or
    the given ``directions``."""
    n = sampling_lib.flat_size(like)

    def sums(z, start, count):
        w = jax.lax.dynamic_slice_in_dim(weights, start, count)
        z = jax.tree.map(lambda leaf: leaf.astype(base.field_dtype(leaf)), z)
        squares = jax.tree.map(jnp.square, z)
        norms = sum(jnp.sum(s.reshape(count, -1), axis=1) for s in jax.tree.leaves(squares))
        w_circ = jnp.where(w < 0, w * n / jnp.maximum(norms, jnp.finfo(w.dtype).tiny), w)
        return (
            jax.tree.map(lambda leaf: jnp.tensordot(jnp.maximum(w, 0), leaf, axes=1), z),
            jax.tree.map(lambda leaf: jnp.tensordot(w_circ, leaf, axes=1), squares),
        )

    if directions is not None:
        first, count = sampling_lib.own_directions(sampling)
        sampling_lib.check_directions(sampling, like, directions, count)
        return population_shard.psum(sums(directions, first, count))

    def chunk_sum(start, count):
        return sums(sampling_lib.sample_directions(sampling, key, start, count, like), start, count)

    return sampling_lib.sweep(sampling, like, chunk_sum)


def _positive(x: jax.Array) -> jax.Array:
    """``x`` kept at or above the smallest normal number of its dtype, so that a step size
    or a variance that underflows does not become 0."""
    return jnp.maximum(x, jnp.finfo(x.dtype).tiny).astype(x.dtype)


def _axis_ratio(diagonal: PyTree) -> jax.Array:
    leaves = jax.tree.leaves(diagonal)
    largest = jnp.max(jnp.stack([jnp.max(c) for c in leaves]))
    smallest = jnp.min(jnp.stack([jnp.min(c) for c in leaves]))
    return jnp.sqrt(largest / smallest)
