r"""Limited-memory matrix adaptation, LM-MA-ES (Loshchilov, Glasmachers and Beyer, 2019):
the search distribution is shaped by :math:`m` vectors, so memory is O(m d).

Member :math:`i` draws :math:`z_i \sim N(0, I)` and passes it through the first
:math:`\min(t, m)` transformations (:math:`t` the generation),

.. math::
    d_i \leftarrow z_i, \qquad
    d_i \leftarrow (1 - c_{d,j})\, d_i + c_{d,j}\, M_j (M_j^\top d_i)
    \quad (j = 1, \dots, \min(t, m)), \qquad x_i = y + \sigma d_i .

Ranked best first, with :math:`w_i \propto \ln(\mu + 1/2) - \ln i` for the
:math:`\mu = \lfloor \lambda / 2 \rfloor` best (summing to 1),
:math:`\mu_w = 1 / \sum_i w_i^2`, :math:`z_w = \sum_{i \le \mu} w_i z_{i:\lambda}` and
:math:`d_w = \sum_{i \le \mu} w_i d_{i:\lambda}`:

.. math::
    p_\sigma &\leftarrow (1 - c_\sigma) p_\sigma + \sqrt{\mu_w c_\sigma (2 - c_\sigma)}\, z_w \\
    M_j &\leftarrow (1 - c_{c,j}) M_j + \sqrt{\mu_w c_{c,j} (2 - c_{c,j})}\, z_w
        \quad (j = 1, \dots, m) \\
    \sigma &\leftarrow \sigma \exp\Big(\frac{c_\sigma}{d_\sigma}
        \Big(\frac{\|p_\sigma\|^2}{d} - 1\Big)\Big) \\
    y &\leftarrow y + \sigma d_w

with :math:`m = 4 + \lfloor 3 \ln d \rfloor`, :math:`c_{d,j} = 1 / (1.5^{j-1} d)`,
:math:`c_{c,j} = \lambda / (4^{j-1} d)`, :math:`c_\sigma = 2 \lambda / d` and
:math:`d_\sigma = 2` (Algorithm 1 of the paper). The transformations are linear, so
:math:`d_w` is :math:`z_w` passed through them: ``tell`` needs only :math:`z_w`, one
chunked sweep over the regenerated noise (or over ``directions``).

Differences from the paper, for small dimensions and long runs: :math:`c_\sigma` and
:math:`c_{c,j}` are capped at 1 (the paper's values exceed 1 when :math:`d < 2\lambda`,
where its update is undefined); :math:`\sigma` changes by at most a factor :math:`e` per
generation, as in pycma, and stays within the dtype's range (between its smallest normal
number and the square root of its largest), so that long float32 runs stay finite.

``stop`` applies those of pycma's termination criteria
(:mod:`~es_toolkit.strategies.termination`) that do not need :math:`C` itself, with an
upper bound on its coordinate standard deviations (:func:`largest_scale`).

References:
    Loshchilov, Glasmachers, Beyer, "Large Scale Black-Box Optimization by Limited-Memory
    Matrix Adaptation", IEEE Transactions on Evolutionary Computation 23(2), 2019.
    Beyer, Sendhoff, "Simplify Your Covariance Matrix Adaptation Evolution Strategy",
    IEEE Transactions on Evolutionary Computation 21(5), 2017 (MA-ES).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree
from jax.flatten_util import ravel_pytree

from es_toolkit import sampling as sampling_lib
from es_toolkit._validate import check_int, check_optional_int, check_positive_scalar
from es_toolkit.strategies import base, termination
from es_toolkit.strategies.cma_es import ranks, state_dtype
from es_toolkit.types import PRNGKey, PyTree


class LMMAESState(NamedTuple):
    mean: PyTree  # y, shaped like params
    sigma: jax.Array  # scalar step size, > 0, in the params' dtype (at least float32)
    path_sigma: PyTree  # p_sigma, shaped like params
    vectors: PyTree  # M_1 .. M_m, shaped like params with a leading axis of m
    generation: jax.Array  # int32 scalar: tells so far (t)
    history: termination.FitnessHistory  # what the termination criteria remember


class LMMAConstants(NamedTuple):
    weights: np.ndarray  # (population_size,) w_i, best first: the mu best sum to 1, then 0
    mu_w: float
    c_sigma: float
    d_sigma: float
    c_d: np.ndarray  # (m,) c_d,j
    c_c: np.ndarray  # (m,) c_c,j


def default_num_vectors(num_params: int) -> int:
    r""":math:`m = 4 + \lfloor 3 \ln d \rfloor` vectors for ``d`` parameters."""
    return 4 + math.floor(3 * math.log(num_params))


def constants(population_size: int, num_params: int, num_vectors: int) -> LMMAConstants:
    """Algorithm 1's constants (see the module docstring), with c_sigma and c_c,j capped
    at 1."""
    lam, n = population_size, num_params
    mu = lam // 2
    positive = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    weights = np.concatenate([positive / positive.sum(), np.zeros(lam - mu)])
    mu_w = 1 / float(np.sum(weights**2))
    j = np.arange(num_vectors)
    c_d = 1 / (1.5**j * n)
    c_c = np.minimum(1.0, lam / (4.0**j * n))
    return LMMAConstants(weights, mu_w, min(1.0, 2 * lam / n), 2.0, c_d, c_c)


@base.rebuildable
def lm_ma_es(
    population_size: int,
    sigma: float = 1.0,
    *,
    num_vectors: int | None = None,
    chunk_size: int | None = None,
    tolfun: float | None = 1e-11,
    tolfunhist: float | None = 1e-12,
    tolx: float | None = 1e-11,
    tolstagnation: int | str | None = "default",
    noeffectcoord: bool = True,
    tolflatfitness: int | None = 1,
    tolupsigma: float | None = 1e20,
) -> base.EvolutionStrategy:
    """LM-MA-ES.

    Args:
        population_size: :math:`\\lambda`, members per generation (at least 2); the
            paper's default, :math:`4 + \\lfloor 3 \\ln d \\rfloor`, is
            :func:`~es_toolkit.strategies.cma_es_default_population_size`.
        sigma: the initial step size :math:`\\sigma`.
        num_vectors: :math:`m`, the number of vectors; by default
            :func:`default_num_vectors` of the number of parameters.
        chunk_size: members whose noise ``tell`` holds at once; ``None``: as many as fit
            ``sampling.DEFAULT_MEMORY_BUDGET`` (256 MiB) of noise, all when they fit.
        tolfun, tolfunhist, tolx, tolstagnation, noeffectcoord, tolflatfitness, tolupsigma:
            pycma's termination criteria and defaults (see
            :mod:`~es_toolkit.strategies.termination`), which ``stop`` applies after
            every generation; ``None`` (``False`` for ``noeffectcoord``) switches one off.
            The covariance :math:`\\sigma^2 T T^\\top` (:math:`T` the product of the
            transformations) is never formed, so the criteria on coordinates use
            :func:`largest_scale`, an upper bound on every standard deviation over
            :math:`\\sigma`: they stop no earlier than the exact ones would. There is no
            :math:`p_c` (tolx looks at the deviations alone), and no ``tolconditioncov``
            or ``noeffectaxis``, which need :math:`C`'s eigenvalues.

    Returns:
        An :class:`~es_toolkit.strategies.EvolutionStrategy` with :class:`LMMAESState`.
    """
    check_int("population_size", population_size, minimum=2)
    check_positive_scalar("sigma", sigma)
    check_optional_int("num_vectors", num_vectors, minimum=1)
    sampling = base.perturbation_sampling(population_size, False, chunk_size)
    criteria = termination.criteria(
        tolfun=tolfun,
        tolfunhist=tolfunhist,
        tolx=tolx,
        tolstagnation=tolstagnation,
        tolconditioncov=None,
        noeffectaxis=False,
        noeffectcoord=noeffectcoord,
        tolflatfitness=tolflatfitness,
        tolupsigma=tolupsigma,
    )

    def stagnation(n: int) -> int | None:
        return termination.resolve_tolstagnation(criteria.tolstagnation, n, population_size)

    def vectors_for(params: PyTree) -> int:
        if num_vectors is not None:
            return num_vectors
        return default_num_vectors(sampling_lib.flat_size(params))

    def constants_for(state: LMMAESState) -> LMMAConstants:
        m = jax.tree.leaves(state.vectors)[0].shape[0]
        return constants(population_size, sampling_lib.flat_size(state.mean), m)

    def init(params: PyTree) -> LMMAESState:
        params = jax.tree.map(jnp.asarray, base.check_params(params))  # canonical dtypes
        m = vectors_for(params)
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, base.field_dtype(p)), params)
        vectors = jax.tree.map(lambda p: jnp.zeros((m, *p.shape), base.field_dtype(p)), params)
        dtype = state_dtype(params)
        n = sampling_lib.flat_size(params)
        history = termination.init_history(n, population_size, dtype, stagnation(n))
        step = jnp.asarray(sigma, dtype)
        return LMMAESState(params, step, zeros, vectors, jnp.zeros((), jnp.int32), history)

    def transform(state: LMMAESState, z: PyTree) -> PyTree:
        d = _through_vectors(state, constants_for(state).c_d, z)
        return jax.tree.map(lambda m, leaf: (state.sigma * leaf).astype(m.dtype), state.mean, d)

    def tell(key: PRNGKey, state: LMMAESState, fitness: jax.Array, directions: PyTree = None):
        fitness = base.check_fitness(fitness, population_size)
        n = sampling_lib.flat_size(state.mean)
        k = constants_for(state)
        dtype = state.sigma.dtype
        weights = jnp.asarray(k.weights, dtype)[ranks(fitness)]
        z_w = sampling_lib.weighted_sum(sampling, key, state.mean, weights, directions=directions)
        z_w = jax.tree.map(lambda z, p: z.astype(p.dtype), z_w, state.path_sigma)
        one = jax.tree.map(lambda leaf: leaf[None], z_w)
        d_w = jax.tree.map(lambda leaf: leaf[0], _through_vectors(state, k.c_d, one))
        c_s = k.c_sigma
        path_sigma = jax.tree.map(
            lambda p, z: ((1 - c_s) * p + math.sqrt(k.mu_w * c_s * (2 - c_s)) * z).astype(p.dtype),
            state.path_sigma,
            z_w,
        )
        c_c = jnp.asarray(k.c_c, dtype)
        entry = jnp.sqrt(k.mu_w * c_c * (2 - c_c))
        vectors = jax.tree.map(
            lambda v, z: (_column(1 - c_c, v) * v + _column(entry, v) * z).astype(v.dtype),
            state.vectors,
            z_w,
        )
        squared = optax.tree.vdot(path_sigma, path_sigma)
        log_step = jnp.clip(c_s / k.d_sigma * (squared / n - 1), -1.0, 1.0)
        mean = jax.tree.map(lambda y, d: (y + state.sigma * d).astype(y.dtype), state.mean, d_w)
        new_sigma = _within_range(state.sigma * jnp.exp(log_step))
        history = termination.update_history(state.history, fitness, stagnation(n))
        generation = state.generation + 1
        new = LMMAESState(mean, new_sigma, path_sigma, vectors, generation, history)
        metrics = {
            **base.fitness_metrics(fitness),
            "grad_norm": state.sigma * optax.tree.norm(d_w),  # length of the mean's step
            "sigma": state.sigma,
        }
        return new, metrics

    def stop(state: LMMAESState) -> jax.Array:
        flat_mean = ravel_pytree(state.mean)[0]
        bound = largest_scale(state, constants_for(state).c_d)[None]
        nothing = jnp.zeros(1, bound.dtype)  # no p_c, no principal axis
        distribution = termination.Distribution(
            mean=flat_mean, sigma=state.sigma, p_c=nothing, stds=bound, scales=bound, axis=nothing
        )
        return termination.reason(
            criteria,
            state.history,
            distribution,
            num_params=flat_mean.size,
            population_size=population_size,
            sigma0=sigma,
        )

    return base.make_strategy(init, tell, sampling, transform=transform, stop=stop)


def largest_scale(state: LMMAESState, c_d: np.ndarray) -> jax.Array:
    r""":math:`\prod_{j \le \min(t, m)} (1 - c_{d,j} + c_{d,j} \|M_j\|^2)`, the product of
    the transformations' largest eigenvalues (each is :math:`1 - c_{d,j}` times the
    identity plus a rank-one term): an upper bound on the norm of their product, hence on
    every coordinate's standard deviation over :math:`\sigma`."""
    squared_norms = sum(
        jnp.sum(jnp.square(v).reshape(v.shape[0], -1), axis=1)
        for v in jax.tree.leaves(state.vectors)
    )
    rates = jnp.asarray(c_d, squared_norms.dtype)
    active = jnp.arange(len(c_d)) < state.generation
    factors = jnp.where(active, 1 - rates + rates * squared_norms, 1)
    return jnp.prod(factors).astype(state.sigma.dtype)


def _through_vectors(state: LMMAESState, c_d: np.ndarray, z: PyTree) -> PyTree:
    """``z`` (leading member axis) through the first ``min(t, m)`` transformations
    :math:`d \\leftarrow (1 - c_{d,j}) d + c_{d,j} M_j (M_j^\\top d)`, in order ``j = 1..m``;
    the later ones get :math:`c_{d,j} = 0`, the identity."""
    z = jax.tree.map(lambda leaf, v: leaf.astype(v.dtype), z, state.vectors)
    active = jnp.arange(len(c_d)) < state.generation
    rates = jnp.where(active, jnp.asarray(c_d, state.sigma.dtype), 0)

    def step(d, inputs):
        vector, rate = inputs
        dots = sum(
            jnp.tensordot(leaf, v, axes=v.ndim)
            for leaf, v in zip(jax.tree.leaves(d), jax.tree.leaves(vector), strict=True)
        )
        d = jax.tree.map(
            lambda leaf, v: ((1 - rate) * leaf + rate * _column(dots, leaf) * v).astype(leaf.dtype),
            d,
            vector,
        )
        return d, None

    d, _ = jax.lax.scan(step, z, (state.vectors, rates))
    return d


def _column(values: jax.Array, like: jax.Array) -> jax.Array:
    """``values`` (one per row of ``like``) shaped to broadcast along ``like``'s rows."""
    return values.reshape(values.shape + (1,) * (like.ndim - 1))


def _within_range(sigma: jax.Array) -> jax.Array:
    info = jnp.finfo(sigma.dtype)
    return jnp.clip(sigma, info.tiny, jnp.sqrt(info.max)).astype(sigma.dtype)
