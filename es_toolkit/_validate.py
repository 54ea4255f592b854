"""Argument checks shared by the public entry points.

Each check names the argument and what was expected, so a bad call fails at once with a
message the user can act on, instead of deep inside a traced computation.
"""

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """Returns ``value`` as an int, or raises if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}.")
    return int(value)


def check_optional_int(name: str, value: Any, *, minimum: int) -> int | None:
    """Like ``check_int`` but lets ``None`` through."""
    return None if value is None else check_int(name, value, minimum=minimum)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return value


def check_positive_scalar(name: str, value: Any) -> None:
    """Raises unless ``value`` is a positive finite real scalar.

    Traced values (inside ``jit``) cannot be inspected and are let through.
    """
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive finite float, got {value!r}.")
    try:
        array = np.asarray(value)
    except Exception as error:
        raise TypeError(f"{name} must be a positive finite float, got {value!r}.") from error
    if array.shape != () or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a positive finite scalar, got {value!r}.")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be a real scalar, got {value!r}.")
    scalar = float(array)
    if not (math.isfinite(scalar) and scalar > 0):
        raise ValueError(f"{name} must be positive and finite, got {scalar}.")


def check_float_tree(name: str, tree: Any) -> Any:
    """Returns ``tree`` with float leaves as arrays; raises on any other leaf.

    Python floats become arrays; integer, boolean, complex and non-numeric leaves are
    rejected because a perturbation ``x + sigma * z`` of them has no meaning.
    """
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        raise ValueError(f"{name} must contain at least one float array, got {tree!r}.")
    checked = []
    for path, leaf in zip(jax.tree_util.tree_flatten_with_path(tree)[0], leaves, strict=True):
        where = f"{name}{jax.tree_util.keystr(path[0])}"
        if isinstance(leaf, float):
            leaf = jnp.asarray(leaf)
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            raise TypeError(f"{where} must be a float array, got {type(leaf).__name__}.")
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{where} must have a floating dtype (float32, float64, ...), got {dtype}; "
                "integer and boolean parameters cannot be perturbed, cast them first."
            )
        checked.append(leaf)
    return jax.tree.unflatten(treedef, checked)


# What JAX raises when a function treats a traced array as a concrete value: NumPy or
# ``math`` on it, a Python ``if``/``int``/``float`` of it, boolean-mask indexing.
TRACING_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.NonConcreteBooleanIndexError,
)


def check_traceable(name: str, fun: Any, *args: Any, hint: str = "") -> Any:
    """Returns ``jax.eval_shape(fun, *args)``; if tracing ``fun`` fails because it needs
    concrete values, raises a TypeError naming ``name`` that says how to write it (and
    ``hint``: what else the caller offers)."""
    try:
        return jax.eval_shape(fun, *args)
    except TRACING_ERRORS as error:
        summary = str(error).strip().splitlines()[0]
        raise TypeError(
            f"{name} must be JAX-traceable: it is called on traced arrays, so write it with "
            "jax.numpy (not NumPy or math) and use jnp.where or jax.lax.cond instead of a "
            f"Python if on its input.{' ' + hint if hint else ''} "
            f"Tracing {name} failed with {type(error).__name__}: {summary}"
        ) from error


def check_array_output(name: str, fun: Any, *args: Any) -> Any:
    """Returns ``jax.eval_shape(fun, *args)``; raises if ``fun`` cannot be traced (see
    :func:`check_traceable`) or does not return arrays."""
    try:
        out = check_traceable(name, fun, *args)
    except TypeError as error:
        if "is not a valid JAX type" in str(error):
            raise TypeError(
                f"{name} must return a pytree of arrays, but it returned a non-array value: {error}"
            ) from error
        raise
    for leaf in jax.tree.leaves(out):
        if not jnp.issubdtype(leaf.dtype, jnp.number) and leaf.dtype != jnp.bool_:
            raise TypeError(f"{name} must return numeric arrays, got dtype {leaf.dtype}.")
    if not jax.tree.leaves(out):
        raise TypeError(f"{name} must return at least one array, got {out!r}.")
    return out
