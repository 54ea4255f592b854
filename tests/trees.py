"""Pytree comparisons shared by the tests: the same structure, then leaf by leaf."""

import jax
import numpy as np


def assert_trees_equal(actual, expected):
    """Bit for bit: same structure, shapes, dtypes and values."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype, (a.dtype, e.dtype)
        np.testing.assert_array_equal(a, e)


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6, *, scaled=False):
    """Same structure and shapes, values within tolerance. With ``scaled``, each leaf is
    compared to ``rtol`` times its largest expected magnitude (sums of many float32
    terms, whose rounding scales with the leaf, not with each entry)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, (a.shape, e.shape)
        if scaled:
            scale = max(float(np.max(np.abs(e))), 1e-6)
            np.testing.assert_allclose(a, e, rtol=0, atol=rtol * scale)
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
