"""Duck-typed spaces, and the action heads that map a network's outputs into them.

Nothing here imports an environment package, so ``es_toolkit.envs`` spaces, Gymnasium's
spaces and any look-alike all work:

* a space with ``.n`` (an int), no ``.low`` and no shape beyond ``()`` is **discrete**; an
  optional ``.start`` (Gymnasium's ``Discrete(n, start)``) offsets the actions;
* a space with ``.low``, ``.high`` and ``.shape`` is a **box**.

Observations must come from a 1-D box (a flat vector); images, Dict and Tuple spaces are
not supported yet.
"""

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit.types import Shape


class ActionHead(NamedTuple):
    """How many raw outputs a network must produce (``size``), and how ``apply`` maps a
    ``(size,)`` float vector to an action of the space; ``numpy_apply`` is the same map in
    NumPy, for rollout workers that step Gymnasium's envs without JAX, and also maps a
    stack ``(n, size)`` to ``n`` actions."""

    size: int
    apply: Callable[[jax.Array], jax.Array]
    numpy_apply: Callable[[np.ndarray], Any]


def describe(space: Any) -> str:
    """A short description of ``space`` for error messages."""
    text = repr(space)
    return text if len(text) <= 200 else text[:197] + "..."


def _shape_of(space: Any) -> Shape | None:
    shape = getattr(space, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(size) for size in shape)
    except TypeError:
        return None


def is_discrete(space: Any) -> bool:
    """True for a space with an integer ``.n``, no ``.low`` and a scalar (or no) shape."""
    n = getattr(space, "n", None)
    return (
        isinstance(n, numbers.Integral)
        and not isinstance(n, bool)
        and not hasattr(space, "low")
        and _shape_of(space) in (None, ())
    )


def is_box(space: Any) -> bool:
    """True for a space with ``.low``, ``.high`` and ``.shape``."""
    return hasattr(space, "low") and hasattr(space, "high") and _shape_of(space) is not None


def observation_shape(space: Any) -> Shape:
    """The ``(d,)`` shape of a flat observation; a clear error for any other space."""
    shape = _shape_of(space) if is_box(space) else None
    if shape is None or len(shape) != 1 or shape[0] < 1:
        raise ValueError(
            f"no policy for this observation space: {describe(space)}. Policies take a flat "
            "vector, i.e. a non-empty 1-D Box (with .low, .high and .shape == (d,)); images, "
            "Dict and Tuple observation spaces are not supported yet."
        )
    return shape


def check_observation(obs: Any, expected_shape: Shape) -> jax.Array:
    """``obs`` as float32, or a clear error (at trace time) if its shape is not expected."""
    shape = tuple(jnp.shape(obs))
    if shape != expected_shape:
        hint = ""
        if len(shape) > len(expected_shape) and shape[-len(expected_shape) :] == expected_shape:
            hint = (
                " apply takes one observation; for a batch use "
                "jax.vmap(policy.apply, in_axes=(None, 0))."
            )
        raise ValueError(
            f"observation has shape {shape}, but the observation space expects shape "
            f"{expected_shape}.{hint}"
        )
    return jnp.asarray(obs, jnp.float32)


def action_head(space: Any) -> ActionHead:
    """The head for a discrete space (argmax) or a box (tanh squashing); an error otherwise."""
    if is_discrete(space):
        return _discrete_head(int(space.n), int(getattr(space, "start", 0) or 0), space)
    if is_box(space):
        return _box_head(space)
    raise ValueError(
        f"no policy for this action space: {describe(space)}. Supported: a discrete space "
        "(with an int .n) or a Box (with .low, .high and .shape)."
    )


def _discrete_head(n: int, start: int, space: Any) -> ActionHead:
    if n < 1:
        raise ValueError(f"a discrete action space needs n >= 1, got n={n} in {describe(space)}.")

    def head(logits: jax.Array) -> jax.Array:
        """The index of the largest logit (the first one on ties), as an int32 scalar."""
        return (jnp.argmax(logits) + start).astype(jnp.int32)

    def numpy_head(logits: np.ndarray) -> np.integer | np.ndarray:
        # NumPy integers: Discrete.contains checks one faster than a Python int.
        index = logits.argmax(axis=-1)
        return index + start if start else index

    return ActionHead(n, head, numpy_head)


def _box_head(space: Any) -> ActionHead:
    """``low + (tanh(y) + 1) / 2 * (high - low)``, clipped to the bounds against rounding.

    Dimensions unbounded on both sides pass ``y`` through; half-bounded ones are refused.
    """
    shape = _shape_of(space)
    low = np.broadcast_to(np.asarray(space.low, np.float64), shape)
    high = np.broadcast_to(np.asarray(space.high, np.float64), shape)
    if np.any(np.isnan(low) | np.isnan(high)) or np.any(low > high):
        raise ValueError(f"action space bounds must satisfy low <= high: {describe(space)}.")
    bounded = np.isfinite(low) & np.isfinite(high)
    free = np.isneginf(low) & np.isposinf(high)
    if not np.all(bounded | free):
        raise ValueError(
            "action space dimensions must be bounded on both sides or on neither, "
            f"got a half-bounded one in {describe(space)}."
        )
    low32 = np.where(bounded, low, -1.0).astype(np.float32)
    high32 = np.where(bounded, high, 1.0).astype(np.float32)
    all_bounded = bool(np.all(bounded))

    def head(y: jax.Array) -> jax.Array:
        """Squashes ``y`` into ``[low, high]``, shaped like the action space, float32."""
        y = jnp.reshape(y, (*y.shape[:-1], *shape)).astype(jnp.float32)
        squashed = low32 + (jnp.tanh(y) + np.float32(1)) / np.float32(2) * (high32 - low32)
        squashed = jnp.clip(squashed, low32, high32)
        return squashed if all_bounded else jnp.where(bounded, squashed, y)

    @functools.lru_cache(maxsize=8)
    def bounds_shaped(actions_shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        # NumPy's ufuncs on operands of one shape skip broadcasting, which a scalar
        # operand takes too.
        arrays = (low32, high32 - low32, high32, bounded, np.float32(1), np.float32(2))
        return tuple(np.broadcast_to(a, actions_shape).copy() for a in arrays)

    def numpy_head(y: np.ndarray) -> np.ndarray:
        """``head`` in NumPy, for one output or a stack: the same float32 operations, with
        the bounds shaped like the actions and ``np.clip`` as its two ufuncs (cheaper
        than its Python-level dispatch)."""
        y = np.asarray(y)
        y = y.reshape(*y.shape[:-1], *shape).astype(np.float32, copy=False)
        low, width, high, inside, one, two = bounds_shaped(y.shape)
        squashed = low + (np.tanh(y) + one) / two * width
        squashed = np.minimum(np.maximum(squashed, low), high)
        return squashed if all_bounded else np.where(inside, squashed, y)

    return ActionHead(math.prod(shape), head, numpy_head)
