r"""Box bounds :math:`l \le x \le u` for the optimizers, as pure functions.

Two ways to keep the search in a box, both elementwise over the pytree:

**Transform** (pycma's ``BoundTransform``). The strategy searches an unbounded :math:`x`;
``f`` is evaluated at :math:`T(x)`, which lies in the box for every real :math:`x`. Per
coordinate, with the margins

.. math::
    a_l = \min\big(\tfrac{u - l}{2}, \tfrac{\max(1, |l|)}{20}\big), \qquad
    a_u = \min\big(\tfrac{u - l}{2}, \tfrac{\max(1, |u|)}{20}\big),

:math:`x` is first brought into :math:`[l - a_l, u + a_u]`: shifted by a multiple of the period
:math:`p = 2 (u - l + a_l + a_u)` when it lies beyond
:math:`[l - 2 a_l - \tfrac{u - l}{2}, u + 2 a_u + \tfrac{u - l}{2}]`, then mirrored at
:math:`u + a_u` and :math:`l - a_l`. Then

.. math::
    T(x) = \begin{cases}
        l + \frac{(x - l + a_l)^2}{4 a_l} & x < l + a_l, \\
        x & l + a_l \le x \le u - a_u, \\
        u - \frac{(x - u - a_u)^2}{4 a_u} & x > u - a_u,
    \end{cases}

the identity in the interior, quadratic near each bound and :math:`C^1` everywhere. A bound
is reached at a finite point (:math:`T(l - a_l) = l`), so an optimum on the boundary is
found without the search running off to infinity. The inverse on the box,

.. math::
    T^{-1}(y) = \begin{cases}
        l - a_l + 2 \sqrt{a_l (y - l)} & y < l + a_l, \\
        y & l + a_l \le y < u - a_u, \\
        u + a_u - 2 \sqrt{a_u (u - y)} & y \ge u - a_u,
    \end{cases}

starts the search at :math:`T^{-1}(x_0)`, so its first mean maps to :math:`x_0`. An infinite
bound has no margin and no quadratic piece on its side; the period shift needs both.

**Penalty.** ``f`` is evaluated at the nearest point of the box, :math:`\Pi(x) =
\min(\max(x, l), u)`, plus :math:`w \|x - \Pi(x)\|^2`, so it is never called outside.

Reference:
    N. Hansen, pycma, ``cma/transformations.py``: ``BoxConstraintsLinQuadTransformation``
    (its ``transform`` and ``inverse``, with the default ``margin_width2``).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit._validate import check_float_tree, check_positive_scalar
from es_toolkit.types import PyTree


class Bounds(NamedTuple):
    lower: PyTree  # shaped like x0, in its dtype; -inf where unbounded below
    upper: PyTree  # shaped like x0, in its dtype; +inf where unbounded above


def make_bounds(bounds: Any, x0: PyTree) -> Bounds:
    """Checks ``bounds = (lower, upper)`` against ``x0`` and returns them as :class:`Bounds`.

    Each side is a number (the same bound for every coordinate), ``None`` (unbounded) or a
    pytree of arrays with x0's structure and shapes. Raises if the pair is malformed, a bound
    is NaN, a lower bound is not below its upper bound, or ``x0`` lies outside the box.
    """
    x0 = check_float_tree("x0", x0)
    if not (isinstance(bounds, tuple | list) and len(bounds) == 2):
        raise TypeError(
            "bounds must be a pair (lower, upper), each a number, None or a pytree like x0, "
            f"got {bounds!r}."
        )
    lower = _side("bounds[0]", bounds[0], x0, -np.inf)
    upper = _side("bounds[1]", bounds[1], x0, np.inf)
    x0_paths = jax.tree_util.tree_flatten_with_path(x0)[0]
    concrete = not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x0))
    for (path, x), lo, hi in zip(
        x0_paths, jax.tree.leaves(lower), jax.tree.leaves(upper), strict=True
    ):
        lo, hi = np.asarray(lo), np.asarray(hi)
        if np.any(lo >= hi):
            index = _first(lo >= hi)
            raise ValueError(
                "bounds: each lower bound must be below its upper bound, but at "
                f"x0{_where(path, index)} lower={float(lo[index])!r} >= "
                f"upper={float(hi[index])!r}."
            )
        if concrete:
            x = np.asarray(x)
            outside = ~((lo <= x) & (x <= hi))
            if np.any(outside):
                index = _first(outside)
                value, lo_i, hi_i = float(x[index]), float(lo[index]), float(hi[index])
                if value > hi_i:
                    relation = f"> upper {hi_i!r}"
                elif value < lo_i:
                    relation = f"< lower {lo_i!r}"
                else:
                    relation = f"is not in [{lo_i!r}, {hi_i!r}]"
                raise ValueError(
                    f"x0 is outside bounds: x0{_where(path, index)}={value!r} {relation}."
                )
    return Bounds(lower, upper)


def _side(name: str, side: Any, x0: PyTree, unbounded: float) -> PyTree:
    """One side of the box as arrays like ``x0``: ``unbounded`` where ``side`` is None."""
    if side is None:
        return jax.tree.map(lambda x: jnp.full(x.shape, unbounded, x.dtype), x0)
    x0_paths, treedef = jax.tree_util.tree_flatten_with_path(x0)
    if _is_number(side):
        leaves = [side] * len(x0_paths)
    elif treedef == jax.tree.structure(0) and isinstance(side, list | tuple | np.ndarray):
        # x0 is one array: a (nested) list of numbers is its bound
        leaves = [side]
    else:
        leaves, side_treedef = jax.tree.flatten(side)
        if side_treedef != treedef:
            raise ValueError(
                f"{name} must be a number, None or a pytree with the structure of x0, "
                f"{treedef}, got {side_treedef}."
            )
    checked = []
    for (path, x), leaf in zip(x0_paths, leaves, strict=True):
        where = f"{name}{jax.tree_util.keystr(path)}"
        array = np.asarray(leaf)
        if array.dtype == np.bool_ or not (
            np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
        ):
            raise TypeError(f"{where} must be a real number or array, got {leaf!r}.")
        if array.shape not in ((), x.shape):
            raise ValueError(
                f"{where} must have shape {x.shape} like x0{jax.tree_util.keystr(path)} "
                f"(or be a number), got shape {array.shape}."
            )
        if np.any(np.isnan(array)):
            where = f"{name}{_where(path, _first(np.isnan(array)))}"
            raise ValueError(f"{where} is NaN; use None or an infinity for no bound.")
        checked.append(jnp.broadcast_to(jnp.asarray(array, x.dtype), x.shape))
    return jax.tree.unflatten(treedef, checked)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) or (
        isinstance(value, np.ndarray | jax.Array) and value.ndim == 0
    )


def _first(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first True entry of ``mask``."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _where(path: Any, index: tuple[int, ...]) -> str:
    """``['w'][1, 2]``: a leaf's path in the pytree, then the entry's index."""
    entry = f"[{', '.join(map(str, index))}]" if index else ""
    return jax.tree_util.keystr(path) + entry


def into_box(bounds: Bounds, x: PyTree) -> PyTree:
    """:math:`T(x)`: every real ``x`` mapped into the box (see the module docstring).

    Elementwise over the pytree, in the dtype of ``x``; works under ``jit`` and ``vmap``.
    """
    return jax.tree.map(_into_box, x, bounds.lower, bounds.upper)


def from_box(bounds: Bounds, y: PyTree) -> PyTree:
    """:math:`T^{-1}(y)` for ``y`` in the box: ``into_box(bounds, from_box(bounds, y)) == y``.

    Values outside the box are first clipped into it.
    """
    return jax.tree.map(_from_box, y, bounds.lower, bounds.upper)


def project(bounds: Bounds, x: PyTree) -> PyTree:
    """:math:`\\Pi(x)`, the nearest point of the box: each coordinate clipped to its bounds."""
    return jax.tree.map(
        lambda x, lo, hi: jnp.clip(x, lo.astype(x.dtype), hi.astype(x.dtype)),
        x,
        bounds.lower,
        bounds.upper,
    )


def penalized(
    f: Callable[[PyTree], jax.Array], bounds: Bounds, weight: float = 1.0
) -> Callable[[PyTree], jax.Array]:
    """:math:`x \\mapsto f(\\Pi(x)) + w \\|x - \\Pi(x)\\|^2`: ``f`` is only called in the box.

    Any :math:`w > 0` keeps f's minimizers over the box and adds none: outside,
    :math:`f(\\Pi(x)) + w d^2 > f(\\Pi(x))`, the value at a point of the box. The weight only
    sets how steeply the outside slopes back towards the box, where :math:`f \\circ \\Pi` alone
    is flat along each outward normal and would let the search drift away. The default 1 makes
    a unit step out cost one unit of ``f``; scale it with ``f``'s range when that is far from 1.
    """
    check_positive_scalar("weight", weight)

    def penalized_f(x: PyTree) -> jax.Array:
        inside = project(bounds, x)
        outside = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), x, inside)
        return f(inside) + weight * sum(jax.tree.leaves(outside))

    return penalized_f


def _margins(lo: jax.Array, hi: jax.Array) -> tuple[jax.Array, jax.Array]:
    """pycma's :math:`a_l, a_u` (``margin_width2``); 1 for an infinite bound, never used."""
    half_width = (hi - lo) / 2
    al = jnp.where(jnp.isfinite(lo), jnp.minimum(half_width, jnp.maximum(1, jnp.abs(lo)) / 20), 1)
    au = jnp.where(jnp.isfinite(hi), jnp.minimum(half_width, jnp.maximum(1, jnp.abs(hi)) / 20), 1)
    return al, au


def _finite(bound: jax.Array) -> jax.Array:
    """``bound`` with infinities replaced by 0, for formulas on a side that is masked off:
    they stay finite, so neither their values nor their derivatives turn into NaN."""
    return jnp.where(jnp.isfinite(bound), bound, 0)


def _into_box(x: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    lb, ub = lower.astype(x.dtype), upper.astype(x.dtype)
    al, au = _margins(lb, ub)
    lo, hi = _finite(lb), _finite(ub)
    # Far outside: shift by whole periods into [start, start + period) (both bounds finite).
    # pycma's x - p * ((x - start) // p) equals this; the exact remainder keeps it in the
    # period for any finite x, where the product loses all digits once |x| >> p.
    both = jnp.isfinite(lb) & jnp.isfinite(ub)
    width = hi - lo
    start = lo - 2 * al - width / 2
    period = jnp.where(both, 2 * (width + al + au), 1)
    far = both & ((x < start) | (x > hi + 2 * au + width / 2))
    y = jnp.where(far, start + jnp.remainder(x - start, period), x)
    # Mirror into [lb - al, ub + au], where the map is invertible.
    y = jnp.where(y > ub + au, y - 2 * (y - hi - au), y)
    y = jnp.where(y < lb - al, y + 2 * (lo - al - y), y)
    # Quadratic near each bound, identity in between.
    near_lower = y < lb + al
    near_upper = ~near_lower & (y > ub - au)
    y = jnp.where(near_lower, lo + (y - (lo - al)) ** 2 / 4 / al, y)
    return jnp.where(near_upper, hi - (y - (hi + au)) ** 2 / 4 / au, y)


def _from_box(y: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    lb, ub = lower.astype(y.dtype), upper.astype(y.dtype)
    al, au = _margins(lb, ub)
    lo, hi = _finite(lb), _finite(ub)
    y = jnp.clip(y, lb, ub)
    near_lower = y < lb + al
    near_upper = ~near_lower & (y >= ub - au)
    # The square roots' arguments are 1 where masked off, keeping their derivatives finite.
    below = jnp.where(near_lower, al * (y - lo), 1)
    above = jnp.where(near_upper, au * (hi - y), 1)
    x = jnp.where(near_lower, (lo - al) + 2 * jnp.sqrt(below), y)
    return jnp.where(near_upper, (hi + au) - 2 * jnp.sqrt(above), x)
