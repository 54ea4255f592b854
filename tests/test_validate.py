"""Bad input to the public entry points gets a clear error naming the argument."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from es_toolkit import Normal, make_perturbed_fun, make_perturbed_value_and_grad

KEY = jax.random.key(0)
X = jnp.array([0.1, 0.2])


def total(x):
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(x))


@pytest.mark.parametrize("factory", [make_perturbed_fun, make_perturbed_value_and_grad])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sigma": 0.0}, ValueError, "sigma must be positive and finite, got 0.0"),
        ({"sigma": -1}, ValueError, "sigma must be positive and finite"),
        ({"sigma": float("nan")}, ValueError, "sigma must be positive and finite, got nan"),
        ({"sigma": float("inf")}, ValueError, "sigma must be positive and finite"),
        ({"sigma": np.array([0.1, 0.2])}, TypeError, "sigma must be a positive finite scalar"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a positive finite scalar"),
        ({"sigma": True}, TypeError, "sigma must be a positive finite float"),
        ({"num_samples": 0}, ValueError, "num_samples must be an int >= 1, got 0"),
        ({"num_samples": 10.0}, TypeError, "num_samples must be an int >= 1"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be an int >= 1, got 0"),
        ({"noise": object()}, TypeError, "noise must implement sample"),
        ({"antithetic": True}, ValueError, "symmetric"),  # default noise is Gumbel
        (
            {"noise": Normal(), "antithetic": True, "num_samples": 9},
            ValueError,
            "num_samples must be even",
        ),
    ],
)
def test_bad_arguments(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(total, **kwargs)


@pytest.mark.parametrize("factory", [make_perturbed_fun, make_perturbed_value_and_grad])
@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (jnp.array([1, 2]), TypeError, "x must have a floating dtype"),
        ({"a": X, "flag": jnp.array(True)}, TypeError, r"x\['flag'\] must have a floating dtype"),
        ((X, "text"), TypeError, r"x\[1\] must be a float array, got str"),
        ({}, ValueError, "x must contain at least one float array"),
        (jnp.array([1 + 2j]), TypeError, "x must have a floating dtype"),
    ],
)
def test_bad_x(factory, x, error, match):
    with pytest.raises(error, match=match):
        factory(total, 4)(KEY, x)


def test_python_float_leaves_are_accepted():
    assert make_perturbed_fun(total, 4)(KEY, {"a": 0.5, "b": X}).shape == ()


@pytest.mark.parametrize("factory", [make_perturbed_fun, make_perturbed_value_and_grad])
def test_fun_returning_non_arrays(factory):
    with pytest.raises(TypeError, match="fun must return a pytree of arrays"):
        factory(lambda x: "not an array", 4)(KEY, X)
    with pytest.raises(TypeError, match="fun must return at least one array"):
        factory(lambda x: None, 4)(KEY, X)


def test_fast_path_needs_scalar_fun():
    with pytest.raises(TypeError, match="fun must return a scalar"):
        make_perturbed_value_and_grad(lambda x: x, 4)(KEY, X)


NOT_TRACEABLE = {
    "numpy call": (lambda x: np.sum(np.sin(x)), jax.errors.TracerArrayConversionError),
    "math call": (lambda x: math.sqrt(x[0] ** 2), jax.errors.ConcretizationTypeError),
    "python if": (lambda x: x[0] if x[0] > 0 else -x[0], jax.errors.TracerBoolConversionError),
}


@pytest.mark.parametrize("factory", [make_perturbed_fun, make_perturbed_value_and_grad])
@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("kind", sorted(NOT_TRACEABLE))
def test_fun_that_is_not_traceable_gets_one_clear_error(factory, chunk_size, kind):
    """NumPy, math or a Python if on the input: one TypeError naming fun and saying how to
    write it, chained from JAX's own error."""
    fun, cause = NOT_TRACEABLE[kind]
    with pytest.raises(TypeError, match="fun must be JAX-traceable") as info:
        factory(fun, 4, chunk_size=chunk_size)(KEY, X)
    assert "jnp.where" in str(info.value)
    assert isinstance(info.value.__cause__, cause)


def test_errors_of_fun_itself_are_not_rewritten():
    def failing(x):
        raise ValueError("my own error")

    with pytest.raises(ValueError, match="my own error"):
        make_perturbed_fun(failing, 4)(KEY, X)
