"""Observation and action spaces: ``Box`` and ``Discrete``, after Gymnasium's.

Spaces are frozen dataclasses with plain (numpy) attributes, so their shapes, dtypes and
bounds are static: build them from concrete environment parameters, never from traced
ones. ``sample(key)`` draws with a JAX key; ``contains(x)`` returns a JAX boolean, so both
work under ``jax.jit`` and ``jax.vmap``. Shape and dtype are checked at trace time (a
mismatch gives a constant ``False``), bounds at run time.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Box:
    """A box in R^shape: ``low <= x <= high`` elementwise; bounds may be infinite.

    ``low`` and ``high`` may be scalars or arrays; they are broadcast to ``shape`` (inferred
    from ``low`` when omitted) and stored as numpy arrays of ``dtype`` (float32 by default).
    """

    low: Any
    high: Any
    shape: tuple[int, ...] | None = None
    dtype: Any = np.float32

    def __post_init__(self):
        dtype = np.dtype(self.dtype)
        shape = np.shape(self.low) if self.shape is None else tuple(self.shape)
        low = np.broadcast_to(np.asarray(self.low, dtype), shape).copy()
        high = np.broadcast_to(np.asarray(self.high, dtype), shape).copy()
        if np.any(low > high):
            raise ValueError(f"Box needs low <= high; got low={low}, high={high}.")
        low.flags.writeable = high.flags.writeable = False
        for name, value in (("low", low), ("high", high), ("shape", shape), ("dtype", dtype)):
            object.__setattr__(self, name, value)

    def sample(self, key: jax.Array) -> jax.Array:
        """Samples like Gymnasium's ``Box.sample``: uniform on bounded coordinates, a
        standard normal on unbounded ones, a shifted exponential on half-bounded ones."""
        if np.all(np.isfinite(self.low) & np.isfinite(self.high)):  # static: bounds are numpy
            return jax.random.uniform(key, self.shape, self.dtype, self.low, self.high)
        k_uniform, k_normal, k_exp = jax.random.split(key, 3)
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        finite_low, finite_high = jnp.isfinite(low), jnp.isfinite(high)
        uniform = jax.random.uniform(
            k_uniform,
            self.shape,
            self.dtype,
            jnp.where(finite_low, low, 0.0),
            jnp.where(finite_high, high, 1.0),
        )
        normal = jax.random.normal(k_normal, self.shape, self.dtype)
        exponential = jax.random.exponential(k_exp, self.shape, self.dtype)
        return jnp.where(
            finite_low & finite_high,
            uniform,
            jnp.where(
                finite_low,
                low + exponential,
                jnp.where(finite_high, high - exponential, normal),
            ),
        )

    def contains(self, x: Any) -> jax.Array:
        """Whether ``x`` has this box's shape, a dtype castable to it, and lies in the box."""
        x = jnp.asarray(x)
        if x.shape != self.shape or not np.can_cast(x.dtype, self.dtype):
            return jnp.array(False)
        return jnp.all((x >= self.low) & (x <= self.high))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Box)
            and self.shape == other.shape
            and self.dtype == other.dtype
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype, self.low.tobytes(), self.high.tobytes()))

    def __repr__(self) -> str:
        return f"Box({self.low}, {self.high}, {self.shape}, {self.dtype})"


@dataclasses.dataclass(frozen=True)
class Discrete:
    """The integers ``{0, 1, ..., n - 1}``, as integer scalars (shape ``()``).

    ``sample`` returns ``int32`` (``int64`` where JAX's 64-bit mode is on); ``contains``
    accepts any integer dtype, like Gymnasium's ``Discrete``.
    """

    n: int

    def __post_init__(self):
        if int(self.n) < 1:
            raise ValueError(f"Discrete needs n >= 1; got n={self.n}.")

    @property
    def shape(self) -> tuple[int, ...]:
        """Always ``()``: one integer."""
        return ()

    @property
    def dtype(self) -> np.dtype:
        """The integer dtype that ``sample`` returns."""
        return np.dtype(jax.dtypes.canonicalize_dtype(np.int64))

    def sample(self, key: jax.Array) -> jax.Array:
        """A uniformly random integer in ``[0, n)``."""
        return jax.random.randint(key, (), 0, self.n, self.dtype)

    def contains(self, x: Any) -> jax.Array:
        """Whether ``x`` is an integer scalar in ``[0, n)``."""
        x = jnp.asarray(x)
        if x.shape != () or not jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.array(False)
        return (x >= 0) & (x < self.n)
