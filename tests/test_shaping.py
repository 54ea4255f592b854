"""Fitness shaping against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

from es_toolkit import shaping

FITNESS = jnp.array([3.0, jnp.nan, 1.0, jnp.inf, 2.0, 2.0, -jnp.inf])


def test_ranks_put_non_finite_last_and_average_ties():
    # finite order: 1 < 2 = 2 < 3 -> ranks 3, 4.5, 4.5, 6; the three non-finite share 0, 1, 2.
    np.testing.assert_allclose(shaping.ranks(FITNESS), [6, 1, 3, 1, 4.5, 4.5, 1])


def test_centered_ranks():
    got = shaping.centered_ranks(jnp.array([10.0, -1.0, 5.0]))
    np.testing.assert_allclose(got, [0.5, -0.5, 0.0])
    np.testing.assert_allclose(shaping.centered_ranks(FITNESS).sum(), 0.0, atol=1e-6)


def test_z_score_treats_non_finite_as_worst_finite():
    got = shaping.z_score(jnp.array([1.0, jnp.nan, 3.0]))
    expected = (np.array([1.0, 1.0, 3.0]) - 5 / 3) / np.std([1.0, 1.0, 3.0])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_nes_utilities_match_wierstra():
    """n = 4: u_k = max(0, log(3) - log(k)) normalized, minus 1/4, best first."""
    raw = np.maximum(0.0, np.log(3.0) - np.log([1.0, 2.0, 3.0, 4.0]))
    expected_best_first = raw / raw.sum() - 0.25
    got = shaping.nes_utilities(jnp.array([0.1, 5.0, -2.0, 1.0]))  # best is index 1
    np.testing.assert_allclose(got[jnp.array([1, 3, 0, 2])], expected_best_first, rtol=1e-5)
    np.testing.assert_allclose(got.sum(), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(shaping.SHAPINGS))
def test_constant_fitness_gives_no_preference(name):
    weights = shaping.get(name)(jnp.full(6, 2.5))
    if name == "raw":
        np.testing.assert_array_equal(weights, 2.5)
    else:
        np.testing.assert_array_equal(weights, 0.0)


def test_unknown_shaping_is_named():
    with pytest.raises(ValueError, match="fitness_shaping must be one of"):
        shaping.get("ranks")
