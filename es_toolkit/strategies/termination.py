r"""Why a run stops: the names of the reasons, shared by strategies and the optimize loop.

A strategy's ``stop(state)`` returns an int32 index into :data:`STOP_REASONS` (0: go on);
``minimize`` adds its own reasons (the generation limit, the evaluation budget, the target,
the callback) and reports the name as ``result.stop_reason``.

The CMA-ES family stops on pycma's criteria (pycma 4.5, ``CMAOptions`` and
``_TermDict`` in cma/evolution_strategy.py), written here as small pure functions, checked
inside ``jit``. With fitness :math:`F` (higher is better, :math:`F = -f`), step size
:math:`\sigma`, covariance :math:`C = B D^2 B^\top`, evolution path :math:`p_c` and
mean :math:`m`, after each generation:

* ``tolfun`` (1e-11): the generation's fitness range and that of the best fitness over
  the last :math:`\lfloor 10 + 30 n / \lambda \rfloor` generations are below it;
* ``tolfunhist`` (1e-12): the latter alone, once it spans more than 9 generations;
* ``tolx`` (1e-11): :math:`\sigma \sqrt{C_{ii}}` and :math:`|\sigma p_{c,i}|` below it
  for every :math:`i`;
* ``tolstagnation`` (:math:`\lfloor 100 + 100 n^{1.5} / \lambda \rfloor` generations):
  no new best for half of it, and the medians of the best and of the median fitness
  (recorded every 5 generations) no better recently than before;
* ``tolconditioncov`` (1e14): :math:`\max_i D_{ii}^2 / \min_i D_{ii}^2` above it;
* ``noeffectaxis``: :math:`m + 0.1 \sigma D_{ii} B_{:,i} = m` in floating point, for
  :math:`i` = generation mod :math:`n`;
* ``noeffectcoord``: :math:`m_i + 0.2 \sigma \sqrt{C_{ii}} = m_i` for some :math:`i`;
* ``tolflatfitness`` (1): more generations than this in a row whose best fitness is not
  above the one ranked :math:`\lfloor 0.75 \lambda \rfloor`;
* ``tolupsigma`` (1e20): :math:`\sigma / \max_i D_{ii} > 10^{20} \sigma_0`.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from es_toolkit._validate import (
    check_bool,
    check_int,
    check_optional_int,
    check_positive_scalar,
)

STOP_REASONS: tuple[str, ...] = (
    "",  # not stopped
    "num_generations",
    "max_evaluations",
    "target",
    "callback",
    "maxiter",  # a restart schedule's cap on the generations of one run
    # pycma's termination criteria, with pycma's names
    "tolfun",
    "tolfunhist",
    "tolx",
    "tolstagnation",
    "tolconditioncov",
    "noeffectaxis",
    "noeffectcoord",
    "tolflatfitness",
    "tolupsigma",
)


def code(name: str) -> int:
    """The index of the reason ``name`` in :data:`STOP_REASONS`."""
    try:
        return STOP_REASONS.index(name)
    except ValueError:
        raise ValueError(
            f"unknown stop reason {name!r}; choose one of {', '.join(STOP_REASONS[1:])}."
        ) from None


def first_reason(checks: dict[str, jax.Array]) -> jax.Array:
    """The code of the first name in ``checks`` whose boolean is true, else 0 (int32)."""
    reason = jnp.zeros((), jnp.int32)
    for name, hit in reversed(checks.items()):
        reason = jnp.where(hit, jnp.int32(code(name)), reason)
    return reason


# --- pycma's termination criteria ----------------------------------------------------------
#
# Small pure functions over plain arrays, shared by the CMA-ES family. Fitness is
# higher-is-better here (pycma minimizes f = -fitness), so pycma's "f below" reads
# "fitness above". The criteria follow pycma 4.5's ``_TermDict`` / ``CMAOptions``
# (cma/evolution_strategy.py), with the differences said where they are.

HISTORY_CAP = 20_000
"""Most entries of either fitness history (pycma caps its long history at 20000 too)."""


class Criteria(NamedTuple):
    """Which of pycma's criteria stop a run, with their thresholds (``None``/``False``:
    off). Build it with :func:`criteria`, which checks the values."""

    tolfun: float | None = 1e-11
    tolfunhist: float | None = 1e-12
    tolx: float | None = 1e-11
    tolstagnation: int | str | None = "default"  # int(100 + 100 n^1.5 / lambda)
    tolconditioncov: float | None = 1e14
    noeffectaxis: bool = True
    noeffectcoord: bool = True
    tolflatfitness: int | None = 1
    tolupsigma: float | None = 1e20


def criteria(**options: Any) -> Criteria:
    """:class:`Criteria` with pycma's defaults changed by ``options`` (e.g. ``tolx=None``),
    each checked: a positive threshold or ``None``, ``tolstagnation`` an int >= 1,
    ``"default"`` or ``None``, ``tolflatfitness`` an int >= 0 or ``None``, the two
    ``noeffect`` flags bools."""
    unknown = sorted(set(options) - set(Criteria._fields))
    if unknown:
        raise TypeError(
            f"unknown termination criteria {', '.join(unknown)}; "
            f"choose among {', '.join(Criteria._fields)}."
        )
    chosen = Criteria(**options)
    for name in ("tolfun", "tolfunhist", "tolx", "tolconditioncov", "tolupsigma"):
        value = getattr(chosen, name)
        if value is not None:
            check_positive_scalar(name, value)
    if isinstance(chosen.tolstagnation, str) and chosen.tolstagnation != "default":
        raise ValueError(
            f'tolstagnation must be an int >= 1, "default" or None, got {chosen.tolstagnation!r}.'
        )
    if chosen.tolstagnation not in ("default", None):
        check_int("tolstagnation", chosen.tolstagnation, minimum=1)
    check_optional_int("tolflatfitness", chosen.tolflatfitness, minimum=0)
    check_bool("noeffectaxis", chosen.noeffectaxis)
    check_bool("noeffectcoord", chosen.noeffectcoord)
    return chosen


def default_tolstagnation(num_params: int, population_size: int) -> int:
    """pycma's ``int(100 + 100 * N**1.5 / popsize)`` generations."""
    return int(100 + 100 * num_params**1.5 / population_size)


def resolve_tolstagnation(
    tolstagnation: int | str | None, num_params: int, population_size: int
) -> int | None:
    """The generations of :class:`Criteria`'s ``tolstagnation`` for this problem."""
    if tolstagnation == "default":
        return default_tolstagnation(num_params, population_size)
    return tolstagnation


def recent_capacity(num_params: int, population_size: int) -> int:
    """Generations the short history keeps: pycma's ``10 + 30 N / popsize``, rounded
    down as its list is, and at most :data:`HISTORY_CAP`."""
    return min(HISTORY_CAP, math.floor(10 + 30 * num_params / population_size))


def sparse_capacity(tolstagnation: int | None) -> int:
    """Entries of the long history (one per 5 generations). pycma keeps 20000; here
    ``max(200, tolstagnation)`` at most 20000 (1 when off), which is all that
    tolstagnation reads for the first ``5 * capacity`` generations; after that its two
    windows stop growing (pycma's grow with the history, a tenth of it each)."""
    if tolstagnation is None:
        return 1
    return min(HISTORY_CAP, max(200, tolstagnation))


class FitnessHistory(NamedTuple):
    """What the fitness-based criteria remember of past generations. Everything stays
    finite: non-finite fitness is recorded as the dtype's lowest value, an unknown range
    (a non-finite fitness) as its largest, and the best ever starts at the lowest."""

    recent_best: jax.Array  # (recent_capacity,) best fitness per generation, ring buffer
    last_range: jax.Array  # scalar: max - min fitness of the last generation
    flat_generations: jax.Array  # int32: consecutive generations with flat fitness
    best_ever: jax.Array  # scalar: best finite fitness so far
    best_generation: jax.Array  # int32: the generation (counted from 1) that found it
    best_member: jax.Array  # int32: its index in that generation's population
    sparse_best: jax.Array  # (sparse_capacity,) best fitness of every 5th generation
    sparse_median: jax.Array  # (sparse_capacity,) median fitness of every 5th generation
    medians_stagnate: jax.Array  # bool: the long history's medians stopped improving
    count: jax.Array  # int32: generations recorded (pycma's countiter)


def init_history(
    num_params: int, population_size: int, dtype: Any, tolstagnation: int | None
) -> FitnessHistory:
    """An empty history for ``tolstagnation`` generations (resolved, or ``None``)."""
    recent = recent_capacity(num_params, population_size)
    sparse = sparse_capacity(tolstagnation)
    return FitnessHistory(
        recent_best=jnp.zeros(recent, dtype),
        last_range=jnp.asarray(jnp.finfo(dtype).max, dtype),
        flat_generations=jnp.zeros((), jnp.int32),
        best_ever=jnp.asarray(jnp.finfo(dtype).min, dtype),
        best_generation=jnp.zeros((), jnp.int32),
        best_member=jnp.asarray(population_size - 1, jnp.int32),
        sparse_best=jnp.zeros(sparse, dtype),
        sparse_median=jnp.zeros(sparse, dtype),
        medians_stagnate=jnp.zeros((), bool),
        count=jnp.zeros((), jnp.int32),
    )


def update_history(
    history: FitnessHistory, fitness: jax.Array, tolstagnation: int | None
) -> FitnessHistory:
    """Records one generation's ``fitness`` (non-finite values count as the worst), as
    pycma's ``tell`` and ``stop`` do: the best into the short history, the best and
    median into the long one every 5th generation (then whether tolstagnation's medians
    stopped improving), the best ever, and the count of flat generations (the best not
    above the fitness ranked ``int(0.75 lambda)``)."""
    dtype = history.recent_best.dtype
    finite = jnp.isfinite(fitness)
    lowest, largest = jnp.finfo(dtype).min, jnp.finfo(dtype).max
    values = jnp.where(finite, fitness.astype(dtype), lowest)
    ranked = -jnp.sort(-values)  # best first
    lam = values.shape[0]
    best = ranked[0]
    median = ranked[(lam - 1) // 2] / 2 + ranked[lam // 2] / 2  # halves: no overflow
    count = history.count + 1
    recent = history.recent_best.at[history.count % history.recent_best.shape[0]].set(best)
    flat = ~(ranked[0] > ranked[int(0.75 * lam)])
    member = jnp.argmax(values).astype(jnp.int32)
    improved = jnp.any(finite) & (best > history.best_ever)
    history = history._replace(
        recent_best=recent,
        last_range=jnp.where(jnp.all(finite), ranked[0] - ranked[-1], largest),
        flat_generations=jnp.where(flat, history.flat_generations + 1, 0),
        best_ever=jnp.where(improved, best, history.best_ever),
        best_generation=jnp.where(improved, count, history.best_generation),
        best_member=jnp.where(improved, member, history.best_member),
        count=count,
    )
    if tolstagnation is None:
        return history
    return jax.lax.cond(
        count % 5 == 0,
        lambda h: _record_sparse(h, best, median, tolstagnation),
        lambda h: h,
        history,
    )


def _record_sparse(
    history: FitnessHistory, best: jax.Array, median: jax.Array, tolstagnation: int
) -> FitnessHistory:
    capacity = history.sparse_best.shape[0]
    slot = (history.count // 5 - 1) % capacity
    history = history._replace(
        sparse_best=history.sparse_best.at[slot].set(best),
        sparse_median=history.sparse_median.at[slot].set(median),
    )
    length = jnp.minimum(history.count // 5, capacity)
    # pycma: l = int(max(tolstagnation / 10, len / 10)) entries per window, newest first
    window = jnp.maximum(tolstagnation / 10, length / 10).astype(jnp.int32)
    ready = (length > 100) & (2 * window < length)

    def stagnate(h: FitnessHistory) -> jax.Array:
        def no_better(ring):
            newer = _window_median(ring, slot, 0, window)
            older = _window_median(ring, slot, window, 2 * window)
            return newer <= older

        return no_better(h.sparse_median) & no_better(h.sparse_best)

    stagnating = jax.lax.cond(ready, stagnate, lambda h: jnp.zeros((), bool), history)
    return history._replace(medians_stagnate=stagnating)


def _window_median(ring: jax.Array, newest: jax.Array, start: jax.Array, stop: jax.Array):
    """The median (of two middle values, NumPy's) of the entries aged ``start`` to
    ``stop - 1`` of a ring buffer whose newest entry is at ``newest`` (age 0)."""
    age = (newest - jnp.arange(ring.shape[0])) % ring.shape[0]
    inside = (age >= start) & (age < stop)
    ordered = jnp.sort(jnp.where(inside, ring, jnp.inf))
    size = stop - start
    return ordered[(size - 1) // 2] / 2 + ordered[size // 2] / 2


def recent_range(history: FitnessHistory) -> jax.Array:
    """max - min of the short history's recorded entries (inf when it overflows: a
    generation without finite fitness)."""
    filled = jnp.arange(history.recent_best.shape[0]) < history.count
    values = history.recent_best
    top = jnp.max(jnp.where(filled, values, -jnp.inf))
    bottom = jnp.min(jnp.where(filled, values, jnp.inf))
    spread = top - bottom
    return jnp.where(jnp.isfinite(spread), spread, jnp.inf)


def tolfun(history: FitnessHistory, tol: float) -> jax.Array:
    """The last generation's fitness range and the short history's are both below
    ``tol``."""
    return (history.last_range < tol) & (recent_range(history) < tol)


def tolfunhist(history: FitnessHistory, tol: float) -> jax.Array:
    """The short history, once it holds more than 9 generations, spans less than
    ``tol``."""
    filled = jnp.minimum(history.count, history.recent_best.shape[0])
    return (filled > 9) & (recent_range(history) < tol)


def tolx(sigma: jax.Array, stds: jax.Array, p_c: jax.Array, tol: float) -> jax.Array:
    """Every coordinate's standard deviation :math:`\\sigma \\sqrt{C_{ii}}` and every
    :math:`|\\sigma p_c|` below ``tol`` (pycma compares the signed :math:`\\sigma p_c`,
    which a negative component always passes)."""
    return jnp.all(sigma * stds < tol) & jnp.all(jnp.abs(sigma * p_c) < tol)


def tolstagnation(
    history: FitnessHistory, num_params: int, population_size: int, tol: int
) -> jax.Array:
    """No improvement for a long time: past ``N (5 + 100 / lambda)`` generations, the
    best ever was found more than ``tol / 2`` generations ago (counted in evaluations /
    lambda, as pycma does) and, over the long history, neither the median of the best
    nor of the median fitness improved from the older window to the newer one."""
    lam = population_size
    dtype = history.best_ever.dtype
    since = (history.count - history.best_generation).astype(dtype) + (
        lam - 1 - history.best_member
    ).astype(dtype) / lam
    return (
        (history.count > num_params * (5 + 100 / lam))
        & (since > tol / 2)
        & history.medians_stagnate
    )


def tolconditioncov(scales: jax.Array, tol: float) -> jax.Array:
    """The condition number of :math:`C`, from the square roots ``scales`` of its
    eigenvalues, above ``tol`` (``max > sqrt(tol) * min``, which cannot overflow)."""
    return jnp.max(scales) > math.sqrt(tol) * jnp.min(scales)


def no_effect(mean: jax.Array, step: jax.Array) -> jax.Array:
    """Elementwise: adding ``step`` leaves ``mean`` unchanged in its own precision."""
    return mean == mean + step.astype(mean.dtype)


def noeffectaxis(mean: jax.Array, sigma: jax.Array, axis: jax.Array) -> jax.Array:
    """A tenth of a step along a principal axis (``axis`` = :math:`D_{ii} B_{:,i}`,
    pycma tries ``i = generation mod N``) does not change the mean at all."""
    return jnp.all(no_effect(mean, 0.1 * sigma * axis))


def noeffectcoord(mean: jax.Array, sigma: jax.Array, stds: jax.Array) -> jax.Array:
    """A fifth of a coordinate's standard deviation does not change some coordinate of
    the mean."""
    return jnp.any(no_effect(mean, 0.2 * sigma * stds))


def tolflatfitness(history: FitnessHistory, tol: int) -> jax.Array:
    """More than ``tol`` consecutive generations whose best fitness was not above the
    one ranked ``int(0.75 lambda)``."""
    return history.flat_generations > tol


def tolupsigma(sigma: jax.Array, sigma0: float, scales: jax.Array, tol: float) -> jax.Array:
    """:math:`\\sigma / \\max_i D_{ii} > \\mathrm{tol}\\ \\sigma_0`: the step size grew
    while the distribution did not (pycma's "creeping behavior")."""
    return sigma > tol * sigma0 * jnp.max(scales)


class Distribution(NamedTuple):
    """What the distribution-based criteria look at, in flat coordinates."""

    mean: jax.Array  # (d,) in the parameters' dtype
    sigma: jax.Array  # scalar step size
    p_c: jax.Array  # (d,) evolution path of the rank-one update, in units of sigma
    stds: jax.Array  # (d,) sqrt(diag C): coordinate standard deviations over sigma
    scales: jax.Array  # (k,) square roots of C's eigenvalues, its principal axes' lengths
    axis: jax.Array  # (d,) D_ii B[:, i], the axis noeffectaxis tries this generation


def reason(
    options: Criteria,
    history: FitnessHistory,
    distribution: Distribution,
    *,
    num_params: int,
    population_size: int,
    sigma0: float,
) -> jax.Array:
    """The first of ``options``' criteria that holds, as an int32 code into
    :data:`STOP_REASONS` (0: go on, and always 0 before the first generation)."""
    o, h, dist = options, history, distribution
    stagnation = resolve_tolstagnation(o.tolstagnation, num_params, population_size)
    checks = {}  # in the order of STOP_REASONS
    if o.tolfun is not None:
        checks["tolfun"] = tolfun(h, o.tolfun)
    if o.tolfunhist is not None:
        checks["tolfunhist"] = tolfunhist(h, o.tolfunhist)
    if o.tolx is not None:
        checks["tolx"] = tolx(dist.sigma, dist.stds, dist.p_c, o.tolx)
    if stagnation is not None:
        checks["tolstagnation"] = tolstagnation(h, num_params, population_size, stagnation)
    if o.tolconditioncov is not None:
        checks["tolconditioncov"] = tolconditioncov(dist.scales, o.tolconditioncov)
    if o.noeffectaxis:
        checks["noeffectaxis"] = noeffectaxis(dist.mean, dist.sigma, dist.axis)
    if o.noeffectcoord:
        checks["noeffectcoord"] = noeffectcoord(dist.mean, dist.sigma, dist.stds)
    if o.tolflatfitness is not None:
        checks["tolflatfitness"] = tolflatfitness(h, o.tolflatfitness)
    if o.tolupsigma is not None:
        checks["tolupsigma"] = tolupsigma(dist.sigma, sigma0, dist.scales, o.tolupsigma)
    code = first_reason(checks)
    return jnp.where(history.count > 0, code, 0)
