"""Where an optimization from the command line starts: ``x0`` as the user gave it (a
number, a list, a ``.npy`` file) and the default start of each kind of objective."""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import objectives
from es_toolkit._run_config import ConfigError


def start_vector(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array of finite numbers, or a ConfigError naming x0."""
    expected = f"{name} must be a float, a non-empty 1-D list of finite floats or a .npy file"
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        raise ConfigError("x0", f"{expected}, got {values!r}.") from None
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iuf":
        raise ConfigError(
            "x0", f"{expected}, got an array of shape {array.shape} and dtype {array.dtype}."
        )
    if not np.all(np.isfinite(array)):
        raise ConfigError("x0", f"{expected}; it holds NaN or infinity.")
    return array.astype(np.float64)


def read_npy(path: str) -> np.ndarray:
    if not path.endswith(".npy"):
        raise ConfigError("x0", f"x0 as a path must name a .npy file, got {path}.")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigError("x0", f"cannot read x0 from {path}: {error}") from None


def initial_vector(config: Any) -> np.ndarray | None:
    """``config.x0`` as a float64 vector of ``dim`` coordinates (None when not given)."""
    if config.x0 is None:
        return None
    if isinstance(config.x0, float):
        return np.full(config.dim, config.x0)
    if isinstance(config.x0, str):
        return np.asarray(np.load(config.x0, allow_pickle=False), dtype=np.float64)
    return np.asarray(config.x0, dtype=np.float64)


def initial_point(config: Any, key: jax.Array) -> jax.Array:
    """The start: ``config.x0`` when given. Else, for a built-in, uniform on its domain,
    mapped affinely onto the part of it inside ``config.bounds`` (onto the nearest bound
    when the box misses the domain); for a Python objective, the middle of the bounds when
    both sides are finite, else the point of the box nearest to 0."""
    given = initial_vector(config)
    if given is not None:
        return jnp.asarray(given, jnp.float32)
    if config.is_python:
        return jnp.asarray(python_start(config.bounds, config.dim), jnp.float32)
    objective = objectives.get(config.objective)
    x0 = objective.init(key, config.dim)
    if config.bounds is None:
        return x0
    low, high = objective.bounds
    lo = -math.inf if config.bounds[0] is None else config.bounds[0]
    hi = math.inf if config.bounds[1] is None else config.bounds[1]
    start, stop = min(max(low, lo), hi), min(max(high, lo), hi)
    if (start, stop) == (low, high):
        return x0
    # The clip keeps rounding from stepping past the box.
    return jnp.clip(start + (stop - start) * (x0 - low) / (high - low), start, stop)


def python_start(bounds: tuple[float | None, float | None] | None, dim: int) -> np.ndarray:
    """The default start of a Python objective in ``bounds`` (see :func:`initial_point`)."""
    low, high = bounds or (None, None)
    if low is not None and high is not None:
        return np.full(dim, low + (high - low) / 2)
    nearest = max(0.0, low) if low is not None else min(0.0, high) if high is not None else 0.0
    return np.full(dim, nearest)
