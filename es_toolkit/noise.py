"""Perturbation distributions, interchangeable with optax's.

``Normal`` and ``Gumbel`` sample exactly as ``optax.perturbations.Normal`` and
``optax.perturbations.Gumbel`` do (same numbers for the same key), so either can be passed
to our transform or to optax's. Each also says whether it is symmetric, which antithetic
sampling needs.
"""

from typing import Any

import jax
import jax.numpy as jnp

from es_toolkit.types import Noise, PRNGKey, Shape


class Normal:
    """Standard normal distribution; symmetric, so valid for antithetic sampling."""

    symmetric = True
    gaussian = True

    def sample(self, key: PRNGKey, sample_shape: Shape = (), dtype: Any = float) -> jax.Array:
        return jax.random.normal(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        return -0.5 * inputs**2

    def __repr__(self) -> str:
        return "Normal()"


class Gumbel:
    """Standard Gumbel distribution; not symmetric, so not valid for antithetic sampling.

    Perturbing the input of an argmax with Gumbel noise gives a softmax in expectation
    (the Gumbel-max trick), which is why optax uses it by default.
    """

    symmetric = False
    gaussian = False

    def sample(self, key: PRNGKey, sample_shape: Shape = (), dtype: Any = float) -> jax.Array:
        return jax.random.gumbel(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        return -inputs - jnp.exp(-inputs)

    def __repr__(self) -> str:
        return "Gumbel()"


def _is_optax_normal(noise: Any) -> bool:
    # optax's noises carry no flags; recognise its Normal by type without importing
    # optax.perturbations eagerly.
    cls = type(noise)
    return cls.__name__ == "Normal" and cls.__module__.startswith("optax.")


def is_symmetric(noise: Noise) -> bool:
    """Whether ``z`` and ``-z`` have the same law under ``noise``."""
    return bool(getattr(noise, "symmetric", False)) or _is_optax_normal(noise)


def is_gaussian(noise: Noise) -> bool:
    """Whether ``noise`` is the standard normal (needed for orthogonal directions)."""
    return bool(getattr(noise, "gaussian", False)) or _is_optax_normal(noise)


def is_plain_normal(noise: Noise) -> bool:
    """Whether ``noise`` is our ``Normal`` or optax's itself (not a subclass, which may
    sample differently): its draws are ``jax.random.normal``'s."""
    return type(noise) is Normal or _is_optax_normal(noise)


def check_noise(noise: Any) -> None:
    """Raises ``TypeError`` unless ``noise`` has callable ``sample`` and ``log_prob``."""
    missing = [m for m in ("sample", "log_prob") if not callable(getattr(noise, m, None))]
    if missing:
        raise TypeError(
            f"noise must implement sample(key, sample_shape, dtype) and log_prob(z) "
            f"(like es_toolkit.noise.Normal()); {noise!r} lacks {', '.join(missing)}."
        )
