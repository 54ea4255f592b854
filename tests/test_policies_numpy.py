"""NumPy forward passes of policies and the NumPy observation normalizer.

Oracle: the JAX ``apply`` and ``normalize`` of the same policy and statistics.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gym_helpers import ACTION_SPACES, box, members, random_params

from es_toolkit.policies import (
    ACTIVATIONS,
    batch_obs_stats,
    make_policy,
    normalize,
)
from es_toolkit.policies._numpy import numpy_normalizer


@pytest.mark.parametrize("action_space", list(ACTION_SPACES))
@pytest.mark.parametrize(
    ("kind", "options"),
    [("linear", {}), ("linear", {"bias": False})]
    + [("mlp", {"hidden_sizes": (8, 5), "activation": name}) for name in sorted(ACTIVATIONS)],
)
def test_numpy_forward_pass_matches_jax_apply(kind, options, action_space):
    space = ACTION_SPACES[action_space]
    policy = make_policy(kind, box(-np.inf, np.inf, (6,)), space, **options)
    params = random_params(policy, jax.random.key(0))
    numpy_params = jax.tree.map(np.asarray, params)
    observations = np.asarray(jax.random.normal(jax.random.key(2), (200, 6))) * 2
    expected = np.asarray(jax.jit(jax.vmap(policy.apply, in_axes=(None, 0)))(params, observations))
    got = np.stack([np.asarray(policy.numpy_apply(numpy_params, obs)) for obs in observations])
    if action_space == "discrete":
        np.testing.assert_array_equal(got, expected)
    else:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("action_space", list(ACTION_SPACES))
@pytest.mark.parametrize(
    ("kind", "options"), [("linear", {}), ("mlp", {"hidden_sizes": (8, 5), "activation": "elu"})]
)
def test_numpy_forward_pass_of_a_stack_equals_each_member_alone(kind, options, action_space):
    policy = make_policy(kind, box(-np.inf, np.inf, (6,)), ACTION_SPACES[action_space], **options)
    stack = jax.vmap(lambda k: random_params(policy, k))(jax.random.split(jax.random.key(0), 9))
    stack = jax.tree.map(np.asarray, stack)
    observations = np.asarray(jax.random.normal(jax.random.key(2), (9, 6))) * 2
    alone = [
        policy.numpy_apply(p, obs) for p, obs in zip(members(stack), observations, strict=True)
    ]
    together = policy.numpy_apply(stack, observations)
    assert together.shape == (9, *np.shape(alone[0]))
    np.testing.assert_array_equal(together, np.stack(alone))  # bit for bit


@pytest.mark.parametrize(
    ("low", "high"),
    [([-2.0, 0.0, -1.0], [3.0, 1.0, 1.0]), ([-2.0, -np.inf, 0.5], [3.0, np.inf, 4.0])],
)
def test_numpy_box_head_is_the_float32_squashing_bit_for_bit(low, high):
    """The NumPy head (bounds shaped like the actions, ``np.clip`` as two ufuncs) gives the
    documented formula's float32 numbers, for one output and for stacks."""
    space = SimpleNamespace(low=np.array(low), high=np.array(high), shape=(3,))
    head = make_policy("linear", box(-1, 1, (2,)), space).numpy_apply
    bounded = np.isfinite(space.low)
    low32 = np.where(bounded, space.low, -1).astype(np.float32)
    high32 = np.where(bounded, space.high, 1).astype(np.float32)
    for shape in ((3,), (7, 3), (16, 3), (7, 3)):
        y = np.asarray(jax.random.normal(jax.random.key(len(shape)), shape)) * 10
        expected = np.clip(
            low32 + (np.tanh(y) + np.float32(1)) / np.float32(2) * (high32 - low32), low32, high32
        )
        expected = np.where(bounded, expected, y)
        params = {"w": np.zeros((*shape[:-1], 2, 3), np.float32), "b": y}
        got = head(params, np.zeros((*shape[:-1], 2), np.float32))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_custom_activation_has_no_numpy_forward_pass():
    policy = make_policy("mlp", box(-1, 1, (3,)), SimpleNamespace(n=2), activation=jnp.sin)
    assert policy.numpy_apply is None


def test_numpy_normalizer_matches_normalize():
    batch = jax.random.normal(jax.random.key(0), (50, 4)) * jnp.array([1.0, 10.0, 0.1, 0.0]) + 3
    stats = batch_obs_stats(4, batch)
    obs = np.asarray(jax.random.normal(jax.random.key(1), (100, 4))) * 20
    expected = np.asarray(normalize(stats, obs))
    np.testing.assert_allclose(numpy_normalizer(stats)(obs), expected, rtol=1e-6, atol=1e-6)
    empty = batch_obs_stats(4, batch[:0])
    np.testing.assert_array_equal(numpy_normalizer(empty)(obs), obs.astype(np.float32))


@pytest.mark.parametrize("counted", [0, 50])
def test_shaped_numpy_normalizer_gives_the_same_bits(counted):
    batch = jax.random.normal(jax.random.key(0), (50, 4)) * jnp.array([1.0, 10.0, 0.1, 0.0]) + 3
    normalizer = numpy_normalizer(batch_obs_stats(4, batch[:counted]))
    obs = np.asarray(jax.random.normal(jax.random.key(1), (16, 4))) * 20
    shaped = normalizer.shaped(obs.shape)
    assert all(array.shape == obs.shape for array in shaped)
    np.testing.assert_array_equal(shaped(obs), normalizer(obs))
