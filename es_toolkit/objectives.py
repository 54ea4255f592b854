r"""Black-box test functions with known optima, in any dimension ``d``.

Every objective is written to be **minimized** (the standard form of the literature) and is a
pure, jittable JAX function of one 1-D float array ``x`` of shape ``(d,)`` returning a scalar
of ``x``'s dtype. Evaluate a population with ``jax.vmap(fn)``; optimize a pytree by flattening
it first (``jax.flatten_util.ravel_pytree``). Our strategies maximize fitness, so pass these
through ``minimize(...)`` (or negate them) when handing them to a strategy.

A wrong input fails when the function is traced, with a message naming ``x``: not a 1-D
array (a batch of shape ``(n, d)`` must go through ``jax.vmap``), a non-float dtype
(integers and booleans are rejected, not cast), or too few coordinates (``d >= 1``, and
``d >= 2`` for Rosenbrock).

===================  ======  =================  ===========================  ====================
name                 smooth  ``bounds``         ``optimum(d)``               optimal value
===================  ======  =================  ===========================  ====================
``sphere``           yes     [-5.12, 5.12]      0                            0
``rosenbrock``       yes     [-5, 10]           1                            0
``rastrigin``        yes     [-5.12, 5.12]      0                            0
``ackley``           no (*)  [-32.768, 32.768]  0                            0
``griewank``         yes     [-600, 600]        0                            0
``styblinski_tang``  yes     [-5, 5]            -2.903534027771177           -39.16616570377141 d
``step``             no      [-100, 100]        0 (all of [-0.5, 0.5)^d)     0
``abs_sum``          no      [-100, 100]        0                            0
``plateau``          no      [-5.12, 5.12]      0 (all of (-1, 1)^d)         0
===================  ======  =================  ===========================  ====================

(*) Ackley is differentiable everywhere except at its optimum, where it is a cone.

Each objective is described by an :class:`Objective`: its ``fn``, the optimum ``x*`` and
the optimal value for a given ``d``, the customary search domain ``bounds = (low, high)``
(the same for every coordinate), ``init(key, d)``, which draws the customary random start
uniformly from ``bounds^d``, and ``smooth``, true when ``fn`` is continuously
differentiable everywhere, optimum included.

References:
  M. Jamil and X.-S. Yang, "A literature survey of benchmark functions for global
  optimization problems", Int. J. Math. Modelling and Numerical Optimisation 4(2), 2013.
  S. Surjanovic and D. Bingham, "Virtual Library of Simulation Experiments: Test Functions
  and Datasets", https://www.sfu.ca/~ssurjano/optimization.html.

Example:

>>> import jax.numpy as jnp
>>> from es_toolkit import objectives
>>> rastrigin = objectives.get("rastrigin")
>>> float(rastrigin.fn(jnp.ones(3)))
3.0
>>> rastrigin.optimal_value(3), rastrigin.bounds
(0.0, (-5.12, 5.12))
>>> objectives.get("styblinski_tang").optimal_value(2)
-78.33233140754282
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from es_toolkit._validate import check_int
from es_toolkit.types import PRNGKey

# The root of 4 x^3 - 32 x + 5 = 0 in [-5, 5] with the lowest value, and that value,
# 0.5 (x^4 - 16 x^2 + 5 x), both correctly rounded to float64 (computed to 50 digits:
# x* = -2.90353402777117709511..., f = -39.16616570377141546389...; the often quoted
# -39.16616570377142 is the same number rounded to 16 significant digits).
STYBLINSKI_TANG_ROOT = -2.903534027771177
STYBLINSKI_TANG_VALUE_PER_COORDINATE = -39.16616570377141


def _check_x(name: str, x: Any, *, min_dim: int = 1) -> jax.Array:
    """Returns ``x`` as an array, or raises unless it is a float array of shape (d,)."""
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name}: x must be a 1-D float array of shape (d,), got {type(x).__name__}."
        ) from error
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name}: x must have a floating dtype (float32, float64, ...), got {x.dtype}; "
            "cast it first, e.g. x.astype(jnp.float32)."
        )
    if x.ndim != 1:
        raise ValueError(
            f"{name}: x must be a 1-D array of shape (d,), got shape {x.shape}; "
            f"evaluate a batch of points with jax.vmap."
        )
    if x.shape[0] < min_dim:
        raise ValueError(
            f"{name}: x must have shape (d,) with d >= {min_dim}, got shape {x.shape}."
        )
    return x


def sphere(x: jax.Array) -> jax.Array:
    r"""Sphere (De Jong's F1): :math:`f(x) = \sum_i x_i^2`.

    Minimum 0 at ``x* = 0``. Convex, separable, smooth; bounds [-5.12, 5.12].
    (Jamil & Yang 2013, no. 137.)
    """
    x = _check_x("sphere", x)
    return jnp.sum(jnp.square(x))


def rosenbrock(x: jax.Array) -> jax.Array:
    r"""Rosenbrock: :math:`f(x) = \sum_{i=1}^{d-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`.

    Needs ``d >= 2``. Minimum 0 at ``x* = (1, ..., 1)``, at the end of a long curved valley;
    smooth, non-separable; bounds [-5, 10] (Surjanovic & Bingham). ``f(0) = d - 1``.
    (Jamil & Yang 2013, no. 105.)
    """
    x = _check_x("rosenbrock", x, min_dim=2)
    head, tail = x[:-1], x[1:]
    return jnp.sum(100.0 * jnp.square(tail - jnp.square(head)) + jnp.square(1.0 - head))


def rastrigin(x: jax.Array) -> jax.Array:
    r"""Rastrigin: :math:`f(x) = 10 d + \sum_i \left(x_i^2 - 10 \cos(2 \pi x_i)\right)`.

    Minimum 0 at ``x* = 0``, among a regular grid of local minima near the integers;
    smooth, separable; bounds [-5.12, 5.12]. ``f(1, ..., 1) = d``. Computed as
    :math:`\sum_i x_i^2 + 20 \sin^2(\pi x_i)`, the same function, whose terms are never
    negative in floating point. (Jamil & Yang 2013, no. 102.)
    """
    x = _check_x("rastrigin", x)
    return jnp.sum(jnp.square(x) + 20.0 * jnp.square(jnp.sin(jnp.pi * x)))


def ackley(x: jax.Array) -> jax.Array:
    r"""Ackley: :math:`f(x) = -20 \exp\left(-0.2 \sqrt{\tfrac1d \sum_i x_i^2}\right)
    - \exp\left(\tfrac1d \sum_i \cos(2 \pi x_i)\right) + 20 + e`.

    Minimum 0 at ``x* = 0``; many local minima on a nearly flat outer region; bounds
    [-32.768, 32.768]. ``f(1, ..., 1) = 20 (1 - e^{-0.2})``. Not differentiable at the
    optimum (the root-mean-square term is a cone there): ``jax.grad`` returns the
    subgradient 0 at ``x = 0``, not NaN. Computed as
    :math:`-20\,\mathrm{expm1}(-0.2 r) - e\,\mathrm{expm1}(-\tfrac2d \sum_i \sin^2 \pi x_i)`,
    the same function, which is exactly 0 at the optimum and never negative in floating
    point. (Jamil & Yang 2013, no. 1.)
    """
    x = _check_x("ackley", x)
    mean_square = jnp.mean(jnp.square(x))
    positive = mean_square > 0
    # sqrt with a finite derivative at 0 (the double-where trick).
    rms = jnp.where(positive, jnp.sqrt(jnp.where(positive, mean_square, 1.0)), 0.0)
    mean_cos_minus_one = -2.0 * jnp.mean(jnp.square(jnp.sin(jnp.pi * x)))
    return -20.0 * jnp.expm1(-0.2 * rms) - math.e * jnp.expm1(mean_cos_minus_one)


def griewank(x: jax.Array) -> jax.Array:
    r"""Griewank: :math:`f(x) = 1 + \tfrac{1}{4000} \sum_i x_i^2
    - \prod_{i=1}^{d} \cos(x_i / \sqrt{i})`.

    Minimum 0 at ``x* = 0``; smooth, non-separable, many shallow local minima; bounds
    [-600, 600]. (Jamil & Yang 2013, no. 59.)
    """
    x = _check_x("griewank", x)
    index = jnp.arange(1, x.shape[0] + 1, dtype=x.dtype)
    return jnp.sum(jnp.square(x)) / 4000.0 + (1.0 - jnp.prod(jnp.cos(x / jnp.sqrt(index))))


def styblinski_tang(x: jax.Array) -> jax.Array:
    r"""Styblinski-Tang: :math:`f(x) = \tfrac12 \sum_i \left(x_i^4 - 16 x_i^2 + 5 x_i\right)`.

    Minimum ``-39.16616570377141 d`` at ``x*_i = -2.903534027771177`` (the lower root of
    :math:`4 x^3 - 32 x + 5 = 0`); smooth, separable, with a local minimum near
    ``x_i = 2.75`` in each coordinate; bounds [-5, 5]. ``f(1, ..., 1) = -5 d``.
    (Jamil & Yang 2013, no. 144.)
    """
    x = _check_x("styblinski_tang", x)
    square = jnp.square(x)
    return 0.5 * jnp.sum(jnp.square(square) - 16.0 * square + 5.0 * x)


def step(x: jax.Array) -> jax.Array:
    r"""Step (De Jong's step, "Step 2" of Jamil & Yang 2013, no. 139):
    :math:`f(x) = \sum_i \lfloor x_i + 0.5 \rfloor^2`.

    Piecewise constant: minimum 0 on the whole cube ``[-0.5, 0.5)^d``; the reported
    ``x*`` is 0. Its gradient is 0 wherever it exists, so only function values carry
    information; bounds [-100, 100].
    """
    x = _check_x("step", x)
    return jnp.sum(jnp.square(jnp.floor(x + 0.5)))


def abs_sum(x: jax.Array) -> jax.Array:
    r"""Sum of absolute values (Schwefel 2.20, Jamil & Yang 2013, no. 122):
    :math:`f(x) = \sum_i |x_i|`.

    Minimum 0 at ``x* = 0``; convex, separable, not differentiable wherever some
    ``x_i = 0`` (the optimum included); bounds [-100, 100].
    """
    x = _check_x("abs_sum", x)
    return jnp.sum(jnp.abs(x))


def plateau(x: jax.Array) -> jax.Array:
    r"""Plateau: the quantized Chebyshev norm :math:`f(x) = \lfloor \max_i |x_i| \rfloor`.

    Piecewise constant on nested cubic shells ``k <= max_i |x_i| < k + 1``, value ``k``:
    minimum 0 on the whole open cube ``(-1, 1)^d``, the reported ``x*`` is 0. Unlike
    :func:`step` it is not separable: only the largest coordinate matters, so a move
    lowers the value only once every coordinate has crossed into the next shell. Gradient
    0 wherever it exists; bounds [-5.12, 5.12]. (Our own construction, in the spirit of
    the plateau functions of the survey.)
    """
    x = _check_x("plateau", x)
    return jnp.floor(jnp.max(jnp.abs(x)))


class Objective(NamedTuple):
    """A test function to minimize, with its known optimum and customary domain.

    Attributes:
      name: the registry name, e.g. ``"rastrigin"``.
      fn: ``fn(x) -> scalar`` for ``x`` of shape ``(d,)``; pure and jittable.
      optimum: ``optimum(d)`` is a minimizer ``x*`` of shape ``(d,)`` in the default float
        dtype (float32, or float64 with ``jax_enable_x64``).
      optimal_value: ``optimal_value(d)`` is ``fn(x*)`` as a Python float.
      bounds: ``(low, high)``, the customary search domain of every coordinate.
      init: ``init(key, d)`` draws a start uniformly from ``bounds^d`` (default float dtype).
      smooth: whether ``fn`` is continuously differentiable everywhere, optimum included.
      min_dim: the smallest valid ``d`` (2 for Rosenbrock, else 1).
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    optimum: Callable[[int], jax.Array]
    optimal_value: Callable[[int], float]
    bounds: tuple[float, float]
    init: Callable[[PRNGKey, int], jax.Array]
    smooth: bool
    min_dim: int = 1


def _objective(
    fn: Callable[[jax.Array], jax.Array],
    *,
    optimum_coordinate: float,
    value_per_coordinate: float,
    bounds: tuple[float, float],
    smooth: bool,
    min_dim: int = 1,
) -> Objective:
    low, high = float(bounds[0]), float(bounds[1])

    def optimum(d: int) -> jax.Array:
        d = check_int("d", d, minimum=min_dim)
        return jnp.full((d,), optimum_coordinate, dtype=float)

    def optimal_value(d: int) -> float:
        d = check_int("d", d, minimum=min_dim)
        return float(value_per_coordinate * d)

    def init(key: PRNGKey, d: int) -> jax.Array:
        d = check_int("d", d, minimum=min_dim)
        return jax.random.uniform(key, (d,), dtype=float, minval=low, maxval=high)

    name = fn.__name__
    optimum.__doc__ = f"A minimizer of {name} of shape (d,)."
    optimal_value.__doc__ = f"The minimum of {name} in dimension d."
    init.__doc__ = f"A start for {name}, uniform in [{low}, {high}]^d."
    return Objective(name, fn, optimum, optimal_value, (low, high), init, smooth, min_dim)


OBJECTIVES: dict[str, Objective] = {
    objective.name: objective
    for objective in (
        _objective(
            sphere,
            optimum_coordinate=0.0,
            value_per_coordinate=0.0,
            bounds=(-5.12, 5.12),
            smooth=True,
        ),
        _objective(
            rosenbrock,
            optimum_coordinate=1.0,
            value_per_coordinate=0.0,
            bounds=(-5.0, 10.0),
            smooth=True,
            min_dim=2,
        ),
        _objective(
            rastrigin,
            optimum_coordinate=0.0,
            value_per_coordinate=0.0,
            bounds=(-5.12, 5.12),
            smooth=True,
        ),
        _objective(
            ackley,
            optimum_coordinate=0.0,
            value_per_coordinate=0.0,
            bounds=(-32.768, 32.768),
            smooth=False,
        ),
        _objective(
            griewank,
            optimum_coordinate=0.0,
            value_per_coordinate=0.0,
            bounds=(-600.0, 600.0),
            smooth=True,
        ),
        _objective(
            styblinski_tang,
            optimum_coordinate=STYBLINSKI_TANG_ROOT,
            value_per_coordinate=STYBLINSKI_TANG_VALUE_PER_COORDINATE,
            bounds=(-5.0, 5.0),
            smooth=True,
        ),
        _objective(
            step,
            optimum_coordinate=0.0,
            value_per_coordinate=0.0,
            bounds=(-100.0, 100.0),
            smooth=False,
        ),
        _objective(
            abs_sum,
            optimum_coordinate=0.0,
            value_per_coordinate=0.0,
            bounds=(-100.0, 100.0),
            smooth=False,
        ),
        _objective(
            plateau,
            optimum_coordinate=0.0,
            value_per_coordinate=0.0,
            bounds=(-5.12, 5.12),
            smooth=False,
        ),
    )
}
"""Every objective by name."""


def get(name: str | Objective) -> Objective:
    """The objective registered as ``name`` (an :class:`Objective` is returned as is).

    Raises:
      ValueError: for an unknown name; the message lists the available ones.
    """
    if isinstance(name, Objective):
        return name
    if not isinstance(name, str) or name not in OBJECTIVES:
        raise ValueError(
            f"Unknown objective {name!r}; available objectives: {', '.join(OBJECTIVES)}."
        )
    return OBJECTIVES[name]
