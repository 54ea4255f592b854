"""Threefry written out: the numbers of jax.random, bit for bit (the oracle), and the
fall back to jax.random wherever they could differ."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from es_toolkit import noise, sampling, threefry

LIKE = {"w": jnp.zeros((5, 3)), "b": jnp.zeros(7), "scalar": jnp.zeros(()), "v": jnp.zeros(100)}


def reference(key, indices, like):
    """What sampling draws through jax.random: fold_in member keys, then optax's tree draw."""
    return jax.vmap(
        lambda j: optax.tree.random_like(jax.random.fold_in(key, j), like, jax.random.normal)
    )(indices)


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey])
@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1, 123456789])
def test_normal_directions_equal_jax_random_bit_for_bit(make_key, seed):
    key = make_key(seed)
    indices = jnp.array([0, 1, 2, 7, 1000, 2**31 - 1])
    assert threefry.applies(key, True, LIKE)
    got = jax.jit(threefry.normal_directions)(key, indices, LIKE)
    jax.tree.map(np.testing.assert_array_equal, got, reference(key, indices, LIKE))


def test_hash_equals_jax_threefry_on_random_counters():
    rng = np.random.default_rng(0)
    k1, k2, x1, x2 = (rng.integers(0, 2**32, 1000, dtype=np.uint32) for _ in range(4))
    from jax._src.random import threefry2x32 as jax_threefry  # the oracle only

    expected = jax.vmap(lambda a, b, c, d: jax_threefry.threefry2x32_p.bind(a, b, c, d))(
        k1, k2, x1, x2
    )
    got = jax.jit(threefry.threefry2x32)(k1, k2, x1, x2)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_sampling_takes_it_only_where_it_gives_jax_randoms_numbers():
    key = jax.random.key(3)
    assert threefry.applies(key, noise.is_plain_normal(noise.Normal()), LIKE)
    assert threefry.applies(key, noise.is_plain_normal(optax.perturbations.Normal()), LIKE)
    assert not threefry.applies(key, noise.is_plain_normal(noise.Gumbel()), LIKE)

    class Scaled(noise.Normal):
        def sample(self, key, sample_shape=(), dtype=float):
            return 2 * super().sample(key, sample_shape, dtype)

    assert not noise.is_plain_normal(Scaled())
    assert not threefry.applies(key, True, {"x": jnp.zeros(3, jnp.bfloat16)})
    assert not threefry.applies(jax.random.key(0, impl="rbg"), True, LIKE)
    # The sampled noise is jax.random's either way, taken through this module or not.
    for chosen in (noise.Normal(), Scaled(), noise.Gumbel()):
        setting = sampling.Sampling(6, chosen)
        got = sampling.sample_directions(setting, key, 0, 6, LIKE)
        expected = jax.vmap(
            lambda j, chosen=chosen: optax.tree.random_like(
                jax.random.fold_in(key, j), LIKE, chosen.sample
            )
        )(jnp.arange(6))
        jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_the_legacy_threefry_setting_falls_back():
    key = jax.random.key(0)
    with jax.threefry_partitionable(False):
        assert not threefry.applies(key, True, LIKE)
        setting = sampling.Sampling(4, noise.Normal())
        got = sampling.sample_directions(setting, key, 0, 4, LIKE)
        jax.tree.map(np.testing.assert_array_equal, got, reference(key, jnp.arange(4), LIKE))
