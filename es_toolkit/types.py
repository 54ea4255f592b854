"""Type aliases and protocols shared across es_toolkit."""

from typing import Any, Protocol, runtime_checkable

import jax

PyTree = Any
"""A pytree whose leaves are JAX arrays."""

PRNGKey = jax.Array
"""A typed key (``jax.random.key``) or a raw uint32 key (``jax.random.PRNGKey``)."""

Shape = tuple[int, ...]


@runtime_checkable
class Noise(Protocol):
    """What a perturbation distribution must implement.

    ``sample(key, sample_shape, dtype)`` draws i.i.d. noise of the given shape and
    ``log_prob(z)`` returns the elementwise log-density of ``z`` up to an additive
    constant (only its derivative matters). optax's ``Normal`` and ``Gumbel`` satisfy
    this protocol, and so do ours.

    A noise may also declare ``symmetric: bool``: ``True`` when ``z`` and ``-z`` have the
    same law, which antithetic (mirrored) sampling requires. Noises that do not declare it
    are treated as not symmetric, except optax's ``Normal``.
    """

    def sample(self, key: PRNGKey, sample_shape: Shape = (), dtype: Any = float) -> jax.Array:
        """Draws noise of shape ``sample_shape`` and the given dtype."""
        ...

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        """Elementwise log-density of ``inputs``, up to an additive constant."""
        ...
