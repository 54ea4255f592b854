"""NumPy twins of the policies' JAX functions, for rollout workers that run without JAX:
the activations, a stack-invariant matmul, and observation normalization. Each gives the
JAX function's float32 numbers (tested bit for bit where the operations are the same)."""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from es_toolkit.policies.normalization import ObsStats

# The same activations in NumPy, for ``Policy.numpy_apply`` (gelu: JAX's tanh approximation).
NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "gelu": lambda x: (
        np.float32(0.5)
        * x
        * (
            np.float32(1)
            + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x**3))
        )
    ),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, np.float32(0)))),
    "swish": lambda x: x / (np.float32(1) + np.exp(-x)),
    "silu": lambda x: x / (np.float32(1) + np.exp(-x)),
}


def numpy_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for one input ``(d,)`` and weights ``(d, k)``, or a stack of inputs
    ``(n, d)`` and of weights ``(n, d, k)``: each row is one ``(1, d) @ (d, k)`` product,
    computed the same way alone or stacked, so a member's actions do not depend on which
    members a rollout worker steps with it."""
    return np.matmul(x[..., None, :], w)[..., 0, :]


class NumpyNormalization(NamedTuple):
    """``normalize``'s float32 arithmetic as arrays for NumPy:
    ``minimum(maximum((obs - mean) / scale, low), high)``."""

    mean: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        standardized = (np.asarray(obs, np.float32) - self.mean) / self.scale
        # Two ufuncs: np.clip's Python-level dispatch costs more than the arithmetic here.
        return np.maximum(np.minimum(standardized, self.high), self.low)

    def shaped(self, shape: tuple[int, ...]) -> "NumpyNormalization":
        """The same normalization for observations of exactly ``shape`` (a stack of rows),
        its arrays broadcast to that shape: ufuncs on operands of one shape skip NumPy's
        broadcasting, which costs more than the arithmetic on a few rows. Same bits."""
        return NumpyNormalization(*(np.broadcast_to(a, shape).copy() for a in self))


def numpy_normalizer(
    stats: ObsStats | None, clip: float | None = 5.0, eps: float = 1e-8
) -> NumpyNormalization:
    """``normalize(stats, .)`` as a NumPy function, for rollout workers without JAX.

    ``stats`` may hold JAX or NumPy arrays; the float32 arithmetic is ``normalize``'s, so
    both give the same numbers up to float32 rounding. Before any observation was counted
    (and for ``stats=None``) it is the identity: mean 0, scale 1, no clipping, which
    returns every float32 observation bit for bit.
    """
    shape = () if stats is None else np.shape(stats.mean)
    count = np.float32(0 if stats is None else stats.count)
    if count <= 0:
        zero, one = np.zeros(shape, np.float32), np.ones(shape, np.float32)
        return NumpyNormalization(zero, one, np.float32(-np.inf) + zero, np.float32(np.inf) + zero)
    mean = np.asarray(stats.mean, np.float32)
    scale = np.sqrt(np.asarray(stats.m2, np.float32) / count + np.float32(eps))
    bound = np.float32(np.inf if clip is None else clip) + np.zeros_like(mean)
    return NumpyNormalization(mean, scale, -bound, bound)
