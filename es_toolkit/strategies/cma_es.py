r"""CMA-ES, the covariance matrix adaptation evolution strategy (Hansen, 2016), with active
(negative) recombination weights.

Members are :math:`x_i = m + \sigma y_i`, :math:`y_i = B D z_i`, :math:`z_i \sim N(0, I)`,
where :math:`C = B D^2 B^\top` is the eigendecomposition of the covariance matrix. With the
members ranked best first (:math:`i{:}\lambda`), :math:`w_i` the recombination weights
(positive for the :math:`\mu` best, negative after) and
:math:`y_w = \sum_{i \le \mu} w_i\, y_{i:\lambda}`, one generation is

.. math::
    m &\leftarrow m + c_m \sigma y_w, \\
    p_\sigma &\leftarrow (1 - c_\sigma) p_\sigma
        + \sqrt{c_\sigma (2 - c_\sigma) \mu_\mathrm{eff}}\; C^{-1/2} y_w, \\
    \sigma &\leftarrow \sigma \exp\Big(\min\Big(1, \frac{c_\sigma}{d_\sigma}
        \Big(\frac{\lVert p_\sigma \rVert}{E\lVert N(0, I) \rVert} - 1\Big)\Big)\Big), \\
    p_c &\leftarrow (1 - c_c) p_c + h_\sigma \sqrt{c_c (2 - c_c) \mu_\mathrm{eff}}\; y_w, \\
    C &\leftarrow \big(1 + c_1 \delta(h_\sigma) - c_1 - c_\mu \textstyle\sum_j w_j\big) C
        + c_1 p_c p_c^\top + c_\mu \sum_{i=1}^{\lambda} w_i^\circ\,
        y_{i:\lambda} y_{i:\lambda}^\top,

with the stall :math:`h_\sigma = 1` iff :math:`\lVert p_\sigma \rVert / \sqrt{1 - (1 -
c_\sigma)^{2(g+1)}} < (1.4 + 2/(n+1))\, E\lVert N(0, I) \rVert` (:math:`g` counts
generations from 0), :math:`\delta(h_\sigma) = (1 - h_\sigma) c_c (2 - c_c)`, and
:math:`w_i^\circ = w_i` for :math:`w_i \ge 0`, :math:`w_i\, n / \lVert C^{-1/2}
y_{i:\lambda} \rVert^2` otherwise. The constants are the defaults of the tutorial's
Table 1 (see :func:`default_parameters`); :math:`c_m = 1`. The bound of 1 on
:math:`\log \sigma`'s change is pycma's, a guard the tutorial does not have: it keeps a
rare very long :math:`p_\sigma` (large populations, flat then steep fitness) from
blowing :math:`\sigma` up in one generation.

Everything comes from one chunked sweep over the population that regenerates
:math:`z_i` from the key: :math:`z_w = \sum_{i \le \mu} w_i z_{i:\lambda}` and the
rank-:math:`\mu` sum :math:`\sum_i w_i^\circ y_i y_i^\top` with :math:`y_i = B D z_i`.
Since :math:`C^{-1/2} y_i = B z_i` (so :math:`\lVert C^{-1/2} y_i \rVert = \lVert z_i
\rVert`), :math:`y_w = B D z_w` and :math:`C^{-1/2} y_w = B z_w`: O(lambda d^2) work,
memory O(chunk d + d^2), never :math:`\lambda d^2`, and no inverse of :math:`D`. As in
the tutorial, :math:`B, D` are refreshed (``eigh``, eigenvalues floored to the smallest
positive normal number) once more than :math:`1 / (10 n (c_1 + c_\mu))` generations have
passed since the last refresh (counted as pycma counts them); in between, sampling and
:math:`C^{-1/2}` use the last decomposition.

Fitness is higher-is-better; non-finite fitness ranks last (ties keep the members' order,
as pycma's stable sort does). Parameters may be any pytree: they are flattened with
``ravel_pytree``; the state is in their dtype (float64 under ``jax_enable_x64``), at
least float32. ``stop`` applies pycma's termination criteria (see
:mod:`es_toolkit.strategies.termination`).

Where pycma 4.5 differs, this follows the tutorial: pycma adds 1/4 to the numerator of
:math:`c_\mu`, scales :math:`c_1` by :math:`\min(1, \lambda/6)`, uses
:math:`c_\sigma = (\mu_\mathrm{eff} + 2)/(n + \mu_\mathrm{eff} + 3)`, another
:math:`d_\sigma`, a squared-norm :math:`h_\sigma` test, mirrors samples for
:math:`\lambda < 6` and rescales
the coordinates once :math:`C`'s condition passes 1e8 (``conditioncov_alleviate``).

References:
    Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772, 2016 (Table 1
    and the algorithm summary).
    Hansen, Ostermeier, "Completely derandomized self-adaptation in evolution
    strategies", Evolutionary Computation 9(2), 2001.
    Jastrebski, Arnold, "Improving evolution strategies through active covariance
    matrix adaptation", CEC 2006.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from es_toolkit import population_shard
from es_toolkit import sampling as sampling_lib
from es_toolkit._validate import check_int, check_positive_scalar
from es_toolkit.strategies import base, termination
from es_toolkit.types import PRNGKey, PyTree

HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes in the covariance algebra


class CMAESState(NamedTuple):
    mean: PyTree  # m, shaped like params
    sigma: jax.Array  # scalar step size
    C: jax.Array  # (d, d) covariance matrix, symmetric positive definite
    B: jax.Array  # (d, d) eigenvectors of C (columns), as of the last decomposition
    D: jax.Array  # (d,) square roots of C's eigenvalues (ascending), same decomposition
    p_sigma: jax.Array  # (d,) conjugate evolution path (step size)
    p_c: jax.Array  # (d,) evolution path (rank-one update)
    generation: jax.Array  # int32 scalar: tells so far
    history: termination.FitnessHistory  # what the termination criteria remember


class CMAParameters(NamedTuple):
    """The strategy's constants for ``num_params`` and ``population_size``."""

    weights: np.ndarray  # (lambda,) w_i by rank, best first: mu positive, then <= 0
    mu: int  # number of positive weights
    mueff: float  # variance-effective selection mass of the positive weights
    c_sigma: float  # cumulation rate of p_sigma
    d_sigma: float  # step-size damping
    c_c: float  # cumulation rate of p_c
    c_1: float  # rank-one learning rate
    c_mu: float  # rank-mu learning rate
    c_m: float  # mean learning rate
    chi_n: float  # E||N(0, I)||
    eigen_interval: int  # generations between eigendecompositions


def cma_es_default_population_size(num_params: int) -> int:
    """The default :math:`\\lambda = 4 + \\lfloor 3 \\ln d \\rfloor` for ``d`` parameters."""
    num_params = check_int("num_params", num_params, minimum=1)
    return 4 + math.floor(3 * math.log(num_params))


def default_parameters(num_params: int, population_size: int) -> CMAParameters:
    r"""The tutorial's Table 1 for :math:`n` = ``num_params``, :math:`\lambda` =
    ``population_size``:

    .. math::
        w'_i = \ln\frac{\lambda + 1}{2} - \ln i, \quad \mu = \lfloor \lambda/2 \rfloor,
        \quad \mu_\mathrm{eff} = \frac{(\sum_{i \le \mu} w'_i)^2}{\sum_{i \le \mu} w_i'^2},
        \quad \mu^-_\mathrm{eff} = \frac{(\sum_{i > \mu} w'_i)^2}{\sum_{i > \mu} w_i'^2},

        c_1 = \frac{2}{(n + 1.3)^2 + \mu_\mathrm{eff}}, \quad
        c_\mu = \min\Big(1 - c_1, \frac{2 (\mu_\mathrm{eff} - 2 + 1/\mu_\mathrm{eff})}
            {(n + 2)^2 + \mu_\mathrm{eff}}\Big),

        w_i = \frac{w'_i}{\sum_j |w'_j|^+} \ (w'_i \ge 0), \qquad
        w_i = \min(\alpha^-_\mu, \alpha^-_{\mu_\mathrm{eff}}, \alpha^-_\mathrm{posdef})
            \frac{w'_i}{\sum_j |w'_j|^-} \ (w'_i < 0),

        \alpha^-_\mu = 1 + \frac{c_1}{c_\mu}, \quad
        \alpha^-_{\mu_\mathrm{eff}} = 1 + \frac{2 \mu^-_\mathrm{eff}}{\mu_\mathrm{eff} + 2},
        \quad \alpha^-_\mathrm{posdef} = \frac{1 - c_1 - c_\mu}{n c_\mu},

        c_\sigma = \frac{\mu_\mathrm{eff} + 2}{n + \mu_\mathrm{eff} + 5}, \quad
        d_\sigma = 1 + 2 \max\Big(0, \sqrt{\frac{\mu_\mathrm{eff} - 1}{n + 1}} - 1\Big)
            + c_\sigma, \quad
        c_c = \frac{4 + \mu_\mathrm{eff}/n}{n + 4 + 2 \mu_\mathrm{eff}/n}, \quad c_m = 1,

    :math:`E\lVert N(0, I) \rVert \approx \sqrt n\, (1 - 1/(4n) + 1/(21 n^2))`, and
    :math:`B, D` refreshed once more than :math:`1/(10 n (c_1 + c_\mu))` generations have
    passed since the last time (pycma's rule; the tutorial's gap, counted as pycma does).
    """
    n = check_int("num_params", num_params, minimum=1)
    lam = check_int("population_size", population_size, minimum=2)
    raw = np.log((lam + 1) / 2) - np.log(np.arange(1, lam + 1))
    mu = lam // 2
    positive, negative = raw[:mu], raw[mu:]  # the weight at (lambda + 1) / 2 is 0
    mueff = positive.sum() ** 2 / np.sum(positive**2)
    mueff_minus = negative.sum() ** 2 / np.sum(negative**2)
    c_1 = 2 / ((n + 1.3) ** 2 + mueff)
    c_mu = min(1 - c_1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    alpha_mu = 1 + c_1 / c_mu if c_mu > 0 else math.inf
    alpha_mueff = 1 + 2 * mueff_minus / (mueff + 2)
    alpha_posdef = (1 - c_1 - c_mu) / (n * c_mu) if c_mu > 0 else math.inf
    negative_scale = min(alpha_mu, alpha_mueff, alpha_posdef) / -negative.sum()
    weights = np.concatenate([positive / positive.sum(), negative_scale * negative])
    c_sigma = (mueff + 2) / (n + mueff + 5)
    d_sigma = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + c_sigma
    c_c = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
    eigen_interval = math.floor(1 / (10 * n * (c_1 + c_mu))) + 1
    return CMAParameters(
        weights, mu, float(mueff), c_sigma, d_sigma, c_c, c_1, c_mu, 1.0, chi_n, eigen_interval
    )


def state_dtype(params: PyTree) -> Any:
    """The state's float dtype: the parameters' (flattened) dtype, at least float32."""
    return jnp.promote_types(ravel_pytree(params)[0].dtype, jnp.float32)


@base.rebuildable
def cma_es(
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
    """CMA-ES with the tutorial's default constants.

    Args:
        population_size: :math:`\\lambda`, members per generation (at least 2);
            :func:`cma_es_default_population_size` gives the usual default.
        sigma: the initial step size :math:`\\sigma_0` (the covariance starts as the
            identity).
        chunk_size: members whose noise ``tell`` holds at once; ``None``: as many as fit
            ``sampling.DEFAULT_MEMORY_BUDGET`` (256 MiB) of noise, all when they fit.
        tolfun, tolfunhist, tolx, tolstagnation, tolconditioncov: pycma's termination
            criteria and defaults (see :mod:`~es_toolkit.strategies.termination`), which
            ``stop`` applies after every generation; ``None`` (``False`` for the
            ``noeffect`` flags) switches one off. ``tolstagnation="default"`` is
            ``int(100 + 100 d**1.5 / population_size)`` generations.
        noeffectaxis, noeffectcoord, tolflatfitness, tolupsigma: more of pycma's
            termination criteria, as above.

    Returns:
        An :class:`~es_toolkit.strategies.EvolutionStrategy` with :class:`CMAESState`.
    """
    check_int("population_size", population_size, minimum=2)
    sampling = base.perturbation_sampling(population_size, False, chunk_size)
    check_positive_scalar("sigma", sigma)
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

    def init(params: PyTree) -> CMAESState:
        params = base.check_params(params)
        dtype = state_dtype(params)
        d = sampling_lib.flat_size(params)
        eye = jnp.eye(d, dtype=dtype)
        zeros = jnp.zeros(d, dtype)
        return CMAESState(
            mean=params,
            sigma=jnp.asarray(sigma, dtype),
            C=eye,
            B=eye,
            D=jnp.ones(d, dtype),
            p_sigma=zeros,
            p_c=zeros,
            generation=jnp.zeros((), jnp.int32),
            history=termination.init_history(d, population_size, dtype, stagnation(d)),
        )

    def transform(state: CMAESState, z: PyTree) -> PyTree:
        flat_mean, unravel = ravel_pytree(state.mean)
        y = jnp.matmul(flat_rows(z, state.C.dtype) * state.D, state.B.T, precision=HIGHEST)
        return jax.vmap(lambda row: unravel(row.astype(flat_mean.dtype)))(state.sigma * y)

    def tell(key: PRNGKey, state: CMAESState, fitness: jax.Array, directions: PyTree = None):
        fitness = base.check_fitness(fitness, population_size)
        flat_mean, unravel = ravel_pytree(state.mean)
        dtype = state.C.dtype
        n = flat_mean.size
        p = default_parameters(n, population_size)
        weights = jnp.asarray(p.weights, dtype)
        member_weights = weights[ranks(fitness)]
        bd = state.B * state.D  # B diag(D)
        z_w, rank_mu = _weighted_sums(sampling, key, state.mean, member_weights, bd, directions)
        y_w = jnp.matmul(bd, z_w, precision=HIGHEST)
        mean = flat_mean.astype(dtype) + p.c_m * state.sigma * y_w
        whitened = jnp.matmul(state.B, z_w, precision=HIGHEST)  # C^{-1/2} y_w
        p_sigma = (1 - p.c_sigma) * state.p_sigma + math.sqrt(
            p.c_sigma * (2 - p.c_sigma) * p.mueff
        ) * whitened
        norm = jnp.linalg.norm(p_sigma)
        log_change = jnp.minimum(1.0, (p.c_sigma / p.d_sigma) * (norm / p.chi_n - 1))
        new_sigma = state.sigma * jnp.exp(log_change)
        unbias = jnp.sqrt(1 - (1 - p.c_sigma) ** (2.0 * (state.generation + 1).astype(dtype)))
        h_sigma = (norm / unbias < (1.4 + 2 / (n + 1)) * p.chi_n).astype(dtype)
        p_c = (1 - p.c_c) * state.p_c + h_sigma * math.sqrt(p.c_c * (2 - p.c_c) * p.mueff) * y_w
        stall = (1 - h_sigma) * p.c_c * (2 - p.c_c)
        decay = 1 + p.c_1 * stall - p.c_1 - p.c_mu * float(np.sum(p.weights))
        cov = decay * state.C + p.c_1 * jnp.outer(p_c, p_c) + p.c_mu * rank_mu
        cov = (cov + cov.T) / 2
        generation = state.generation + 1
        b, d = jax.lax.cond(
            generation % p.eigen_interval == 0,
            eigen,
            lambda _: (state.B, state.D),
            cov,
        )
        new = CMAESState(
            mean=unravel(mean.astype(flat_mean.dtype)),
            sigma=new_sigma,
            C=cov,
            B=b,
            D=d,
            p_sigma=p_sigma,
            p_c=p_c,
            generation=generation,
            history=termination.update_history(state.history, fitness, stagnation(n)),
        )
        metrics = {  # of the distribution the members were drawn from
            **base.fitness_metrics(fitness),
            "grad_norm": state.sigma * jnp.linalg.norm(y_w),  # length of the mean's step
            "sigma": state.sigma,
            "condition": condition_number(state.D),
        }
        return new, metrics

    def stop(state: CMAESState) -> jax.Array:
        flat_mean = ravel_pytree(state.mean)[0]
        n = flat_mean.size
        axis = state.generation % n  # pycma tries one principal axis per generation
        distribution = termination.Distribution(
            mean=flat_mean,
            sigma=state.sigma,
            p_c=state.p_c,
            stds=jnp.sqrt(jnp.maximum(jnp.diagonal(state.C), 0)),
            scales=state.D,
            axis=state.D[axis] * state.B[:, axis],
        )
        return termination.reason(
            criteria,
            state.history,
            distribution,
            num_params=n,
            population_size=population_size,
            sigma0=sigma,
        )

    return base.make_strategy(init, tell, sampling, transform=transform, stop=stop)


def ranks(fitness: jax.Array) -> jax.Array:
    """Each member's rank, 0 for the best (highest) fitness; non-finite fitness ranks
    last, and ties keep the members' order (a stable sort, as pycma's)."""
    finite = jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf)
    order = jnp.argsort(-finite, stable=True)
    return jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))


def eigen(cov: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(B, D)``: eigenvectors of the symmetric ``cov`` and the square roots of its
    eigenvalues (ascending), floored to the smallest positive normal number so that
    rounding never makes them NaN."""
    eigenvalues, vectors = jnp.linalg.eigh(cov)
    floor = jnp.finfo(cov.dtype).tiny
    return vectors, jnp.sqrt(jnp.maximum(eigenvalues, floor))


def condition_number(d: jax.Array) -> jax.Array:
    """The condition number of :math:`C = B D^2 B^T` from its ``D`` (inf if it
    overflows)."""
    return (jnp.max(d) / jnp.min(d)) ** 2


def flat_rows(z: PyTree, dtype: Any) -> jax.Array:
    """A pytree of noise with a leading member axis as a ``(members, d)`` matrix."""
    return jax.vmap(lambda member: ravel_pytree(member)[0])(z).astype(dtype)


def _weighted_sums(
    sampling: sampling_lib.Sampling,
    key: PRNGKey,
    like: PyTree,
    member_weights: jax.Array,
    bd: jax.Array,
    directions: PyTree | None,
) -> tuple[jax.Array, jax.Array]:
    r"""``(z_w, R)``: :math:`\sum_i \max(w_i, 0)\, z_i` and the rank-:math:`\mu` sum
    :math:`R = \sum_i w_i^\circ y_i y_i^\top`, :math:`y_i = B D z_i`, ``w`` by member, in
    one sweep (chunked, sharded) over the regenerated noise or the given ``directions``:
    O(lambda d^2) work, where forming :math:`(BD) S (BD)^\top` from the z-space sum would
    take two d x d products."""
    n = sampling_lib.flat_size(like)
    dtype = bd.dtype

    def sums(z: PyTree, start: Any, count: int) -> tuple[jax.Array, jax.Array]:
        rows = flat_rows(z, dtype)
        w = jax.lax.dynamic_slice_in_dim(member_weights, start, count)
        squared_norms = jnp.maximum(jnp.sum(rows**2, axis=1), jnp.finfo(dtype).tiny)
        w_circ = jnp.where(w < 0, w * n / squared_norms, w)
        z_w = jnp.matmul(jnp.maximum(w, 0), rows, precision=HIGHEST)
        y = jnp.matmul(rows, bd.T, precision=HIGHEST)
        rank_mu = jnp.matmul((y * w_circ[:, None]).T, y, precision=HIGHEST)
        return z_w, rank_mu

    if directions is not None:
        first, count = sampling_lib.own_directions(sampling)
        sampling_lib.check_directions(sampling, like, directions, count)
        return population_shard.psum(sums(directions, first, count))

    def chunk_sum(start: Any, count: int) -> tuple[jax.Array, jax.Array]:
        z = sampling_lib.sample_directions(sampling, key, start, count, like)
        return sums(z, start, count)

    return sampling_lib.sweep(sampling, like, chunk_sum)
