"""Noise distributions: same draws and densities as optax's, and their symmetry flags."""

import jax
import jax.numpy as jnp
import numpy as np
import optax.perturbations as optax_pert
import pytest

from es_toolkit import noise
from es_toolkit.types import Noise


@pytest.mark.parametrize("name", ["Normal", "Gumbel"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16])
def test_same_samples_and_log_prob_as_optax(name, dtype):
    ours, ref = getattr(noise, name)(), getattr(optax_pert, name)()
    key = jax.random.key(7)
    z = ours.sample(key, (5, 3), dtype)
    assert z.dtype == dtype
    np.testing.assert_array_equal(z, ref.sample(key, (5, 3), dtype))
    np.testing.assert_array_equal(ours.log_prob(z), ref.log_prob(z))


def test_default_sample_is_a_scalar_float():
    z = noise.Normal().sample(jax.random.key(0))
    assert z.shape == ()
    assert jnp.issubdtype(z.dtype, jnp.floating)


def test_symmetry_flags():
    assert noise.is_symmetric(noise.Normal())
    assert noise.is_symmetric(optax_pert.Normal())
    assert not noise.is_symmetric(noise.Gumbel())
    assert not noise.is_symmetric(optax_pert.Gumbel())
    assert noise.is_gaussian(optax_pert.Normal())
    assert not noise.is_gaussian(noise.Gumbel())


def test_custom_noise_declares_symmetry():
    class Laplace:
        symmetric = True

        def sample(self, key, sample_shape=(), dtype=float):
            return jax.random.laplace(key, sample_shape, dtype)

        def log_prob(self, inputs):
            return -jnp.abs(inputs)

    assert isinstance(Laplace(), Noise)
    assert noise.is_symmetric(Laplace())
    assert not noise.is_gaussian(Laplace())


def test_noise_without_methods_is_rejected():
    with pytest.raises(TypeError, match="lacks log_prob"):
        noise.check_noise(type("OnlySample", (), {"sample": lambda self, *a: None})())
    with pytest.raises(TypeError, match="lacks sample, log_prob"):
        noise.check_noise(object())
