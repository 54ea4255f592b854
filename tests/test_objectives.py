"""Test functions: optima, reference values, grids, gradients, transforms and errors.

Oracles are independent of the module: textbook formulas in NumPy float64 (the module
computes some of them in rearranged forms), values worked out by hand, brute-force grids and
the roots of Styblinski-Tang's derivative from ``np.roots``. Every evaluation goes through
one cached ``jax.jit`` per function (eager JAX would compile op by op), to stay fast.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from es_toolkit import objectives
from es_toolkit.objectives import OBJECTIVES, Objective

NAMES = list(OBJECTIVES)
SMOOTH = ["sphere", "rosenbrock", "rastrigin", "griewank", "styblinski_tang"]


@functools.cache
def jitted(fn, *, batched=False, grad=False):
    """One compiled wrapper per function and transform."""
    if grad:
        fn = jax.grad(fn)
    return jax.jit(jax.vmap(fn) if batched else fn)


def value(fn, x, dtype=jnp.float32) -> float:
    return float(jitted(fn)(jnp.asarray(x, dtype)))


def textbook(name: str, x: np.ndarray) -> float:
    """Each function as the survey writes it, in NumPy float64."""
    d = x.shape[0]
    if name == "sphere":
        return float(np.sum(x**2))
    if name == "rosenbrock":
        return float(sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(d - 1)))
    if name == "rastrigin":
        return float(10 * d + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))
    if name == "ackley":
        return float(
            -20 * np.exp(-0.2 * np.sqrt(np.mean(x**2)))
            - np.exp(np.mean(np.cos(2 * np.pi * x)))
            + 20
            + np.e
        )
    if name == "griewank":
        return float(1 + np.sum(x**2) / 4000 - np.prod(np.cos(x / np.sqrt(np.arange(1, d + 1)))))
    if name == "styblinski_tang":
        return float(0.5 * np.sum(x**4 - 16 * x**2 + 5 * x))
    if name == "step":
        return float(np.sum(np.floor(x + 0.5) ** 2))
    if name == "abs_sum":
        return float(np.sum(np.abs(x)))
    if name == "plateau":
        return float(np.floor(np.max(np.abs(x))))
    raise AssertionError(name)


def dims(objective: Objective) -> list[int]:
    return [d for d in (1, 2, 10, 1000) if d >= objective.min_dim]


def below_tolerance(optimum: float) -> float:
    """How far below the optimum float32 rounding may land: 0 when the optimum is 0.

    The zero-optimum functions are computed as sums of terms that are non-negative in
    floating point, so they must never go below 0; Styblinski-Tang sums d values of about
    -39 in float32 (relative rounding about 1e-7 per term).
    """
    return 1e-5 * abs(optimum)


# Registry and metadata.


def test_registry_names_and_metadata():
    assert NAMES == [
        "sphere",
        "rosenbrock",
        "rastrigin",
        "ackley",
        "griewank",
        "styblinski_tang",
        "step",
        "abs_sum",
        "plateau",
    ]
    for name, objective in OBJECTIVES.items():
        assert isinstance(objective, Objective)
        assert objective.name == name
        assert objective.fn is getattr(objectives, name)
        assert objectives.get(name) is objective
        assert objectives.get(objective) is objective
        low, high = objective.bounds
        assert isinstance(low, float)
        assert isinstance(high, float)
        assert low < high
        assert objective.smooth == (name in SMOOTH)
        assert objective.min_dim == (2 if name == "rosenbrock" else 1)
        x_star = np.asarray(objective.optimum(3))
        assert x_star.shape == (3,)
        assert x_star.dtype == np.float32
        assert np.all((low <= x_star) & (x_star <= high)), "the optimum lies inside the bounds"
        assert isinstance(objective.optimal_value(3), float)


def test_customary_bounds():
    bounds = {name: objective.bounds for name, objective in OBJECTIVES.items()}
    assert bounds == {
        "sphere": (-5.12, 5.12),
        "rosenbrock": (-5.0, 10.0),
        "rastrigin": (-5.12, 5.12),
        "ackley": (-32.768, 32.768),
        "griewank": (-600.0, 600.0),
        "styblinski_tang": (-5.0, 5.0),
        "step": (-100.0, 100.0),
        "abs_sum": (-100.0, 100.0),
        "plateau": (-5.12, 5.12),
    }


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"'spheer'.*available objectives: sphere, rosenbrock"):
        objectives.get("spheer")
    with pytest.raises(ValueError, match="plateau"):
        objectives.get(3)


# Optimum.


@pytest.mark.parametrize("name", NAMES)
def test_optimum_and_random_points(name):
    """f(x*) = f* for d in {1, 2, 10, 1000}, and no point is lower, in float32.

    The points are uniform in the bounds, from a wider Gaussian and within ~1e-3 of x*;
    x* goes first in the same batch (one compilation per d).
    """
    objective = OBJECTIVES[name]
    fn = jitted(objective.fn, batched=True)
    low, high = objective.bounds
    rng = np.random.default_rng(0)
    for d in dims(objective):
        n = 256 if d < 1000 else 32
        x_star = np.asarray(objective.optimum(d))
        inside = rng.uniform(low, high, (n, d))
        wide = 3 * max(abs(low), abs(high)) * rng.standard_normal((n, d))
        near = x_star + 1e-3 * rng.standard_normal((n, d))
        points = np.concatenate([x_star[None], inside, wide, near])
        values = np.asarray(fn(jnp.asarray(points, jnp.float32)))
        optimum = objective.optimal_value(d)
        assert values[0] == pytest.approx(optimum, rel=1e-5, abs=0.0), (name, d)
        if optimum == 0.0:
            assert values[0] == 0.0, (name, d)
        assert np.all(np.isfinite(values))
        assert values.min() >= optimum - below_tolerance(optimum), (name, d)


def test_styblinski_tang_optimum_from_the_roots_of_its_derivative():
    """x* is the lower root of f'(x)/2 = 2 x^3 - 16 x + 2.5 and f* = d f(x*) (float64)."""
    roots = np.roots([2.0, 0.0, -16.0, 2.5])
    assert np.all(np.isreal(roots))
    values = 0.5 * (roots.real**4 - 16 * roots.real**2 + 5 * roots.real)
    root = roots.real[np.argmin(values)]
    assert pytest.approx(root, rel=1e-14) == objectives.STYBLINSKI_TANG_ROOT
    value_per_coordinate = objectives.STYBLINSKI_TANG_VALUE_PER_COORDINATE
    assert pytest.approx(values.min(), rel=1e-14) == value_per_coordinate
    assert pytest.approx(-39.16616570377142, rel=1e-15) == value_per_coordinate
    objective = OBJECTIVES["styblinski_tang"]
    assert objective.optimal_value(7) == pytest.approx(7 * values.min(), rel=1e-14)
    with jax.enable_x64(True):
        for d in (1, 10, 1000):
            x_star = objective.optimum(d)
            assert x_star.dtype == jnp.float64
            got = jitted(objective.fn)(x_star)
            assert got.dtype == jnp.float64
            assert float(got) == pytest.approx(objective.optimal_value(d), rel=1e-14)
            if d == 10:
                grad = jitted(objective.fn, grad=True)(x_star)
                assert float(jnp.max(jnp.abs(grad))) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_gradient_at_optimum(name):
    """~0 in d = 10 for the smooth ones, Ackley (subgradient 0, not NaN), step, plateau."""
    objective = OBJECTIVES[name]
    grad = np.asarray(jitted(objective.fn, grad=True)(objective.optimum(10)))
    assert grad.shape == (10,)
    assert np.all(np.isfinite(grad))
    if name != "abs_sum":  # |x| has no gradient at 0; JAX returns 1.
        # float32 x* of Styblinski-Tang is off by ~1e-7; f'' ~ 70 gives ~1e-5.
        assert np.max(np.abs(grad)) < 1e-4


def grid(low: float, high: float, n: int) -> jax.Array:
    axis = jnp.linspace(low, high, n)
    return jnp.stack(jnp.meshgrid(axis, axis), axis=-1).reshape(-1, 2)


@pytest.mark.parametrize("name", NAMES)
def test_brute_force_grid_in_2d_finds_nothing_lower(name):
    """A 200 x 200 grid over the bounds and a fine 101 x 101 grid (step 2e-4) around x*.

    In float64, so the fine grid resolves value differences of ~1e-7 near the optimum: a
    wrongly placed x* (even by 1e-4) would show a lower grid value. The even count keeps
    x* off the coarse grid, whose best point must lie within one spacing of x* (or of the
    optimal set of step and plateau; the Rosenbrock valley is flat enough to allow 0.3).
    """
    objective = OBJECTIVES[name]
    low, high = objective.bounds
    with jax.enable_x64(True):
        fn = jitted(objective.fn, batched=True)
        optimum = objective.optimal_value(2)
        x_star = objective.optimum(2)
        coarse = grid(low, high, 200)
        fine = x_star + grid(-0.01, 0.01, 101)
        values = fn(jnp.concatenate([coarse, fine]))
        coarse_values, fine_values = values[: len(coarse)], values[len(coarse) :]
        assert float(jnp.min(coarse_values)) >= optimum - 1e-12
        assert float(jnp.min(fine_values)) >= optimum - 1e-12
        assert float(jnp.min(fine_values)) == pytest.approx(optimum, abs=1e-12)
        if name != "griewank":  # Its 3-wide grid cells miss the narrow basin of x* = 0.
            best = coarse[jnp.argmin(coarse_values)]
            spacing = (high - low) / 199
            slack = {"rosenbrock": 0.3, "step": 0.5, "plateau": 1.0}.get(name, 0.0) + spacing
            assert float(jnp.max(jnp.abs(best - x_star))) < slack, (name, best)


# Reference values.


@pytest.mark.parametrize("name", NAMES)
def test_matches_textbook_formula(name):
    """Against the survey's formulas in NumPy float64, at random and near-optimal points."""
    objective = OBJECTIVES[name]
    rng = np.random.default_rng(0)
    low, high = objective.bounds
    with jax.enable_x64(True):
        inside = rng.uniform(low, high, size=(5, 3))
        near = np.asarray(objective.optimum(3)) + 1e-3 * rng.standard_normal((3, 3))
        points = np.concatenate([inside, near])
        expected = [textbook(name, x) for x in points]
        got = jitted(objective.fn, batched=True)(jnp.asarray(points))
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_values_by_hand():
    d = 10
    ones, zeros = np.ones(d), np.zeros(d)
    f = objectives
    assert value(f.sphere, [1.0, 2.0, 3.0]) == 14.0
    assert value(f.rosenbrock, zeros) == d - 1
    assert value(f.rosenbrock, [1.0, 2.0]) == 100.0  # 100 (2 - 1)^2
    assert value(f.rosenbrock, [-1.0, 1.0]) == 4.0  # (1 - (-1))^2
    assert value(f.rastrigin, ones) == pytest.approx(d, rel=1e-6)
    assert value(f.rastrigin, [0.5]) == pytest.approx(20.25, rel=1e-6)  # 0.25 + 10 (1 + 1)
    assert value(f.ackley, zeros) == 0.0
    assert value(f.ackley, ones) == pytest.approx(20 * (1 - math.exp(-0.2)), rel=1e-6)
    two_pi = 2 * math.pi
    assert value(f.griewank, [two_pi]) == pytest.approx(two_pi**2 / 4000, rel=1e-5)
    # cos(2 pi sqrt(2) / sqrt(2)) = 1, so only the quadratic term is left.
    assert value(f.griewank, [0.0, two_pi * math.sqrt(2)]) == pytest.approx(
        2 * two_pi**2 / 4000, rel=1e-5
    )
    assert value(f.styblinski_tang, zeros) == 0.0
    assert value(f.styblinski_tang, ones) == -5.0 * d  # (1 - 16 + 5) / 2 per coordinate
    assert value(f.step, [0.49, -0.5, 0.5, 1.7]) == 5.0  # 0 + 0 + 1 + 4
    assert value(f.step, [-0.51]) == 1.0
    assert value(f.abs_sum, [-1.0, 2.5]) == 3.5
    assert value(f.plateau, [0.99, -0.5]) == 0.0
    assert value(f.plateau, [1.0, 0.0]) == 1.0
    assert value(f.plateau, [-2.7, 1.2]) == 2.0


def test_plateaus_are_flat():
    """step and plateau are constant on their optimal cubes and on cells away from them."""
    rng = np.random.default_rng(0)
    points = jnp.asarray(rng.uniform(-0.49, 0.49, (64, 5)), jnp.float32)
    shell = points.at[:, 0].set(2.5)  # max |x_i| in [2, 3) for every point
    step, plateau = objectives.step, objectives.plateau
    assert np.all(np.asarray(jitted(step, batched=True)(points)) == 0.0)
    assert np.all(np.asarray(jitted(plateau, batched=True)(2 * points)) == 0.0)
    assert np.all(np.asarray(jitted(plateau, batched=True)(shell)) == 2.0)
    for fn in (step, plateau):
        assert np.all(np.asarray(jitted(fn, batched=True, grad=True)(shell + 0.1)) == 0.0)


# Transforms and dtypes.


@pytest.mark.parametrize("name", NAMES)
def test_jit_and_vmap(name):
    """jit of one point, jit of vmap, and vmap of grad agree with each other and NumPy."""
    objective = OBJECTIVES[name]
    rng = np.random.default_rng(3)
    points = jnp.asarray(rng.uniform(*objective.bounds, (4, 10)), jnp.float32)
    expected = [textbook(name, np.asarray(x, np.float64)) for x in points]
    batched = jitted(objective.fn, batched=True)(points)
    single = [float(jitted(objective.fn)(x)) for x in points]
    np.testing.assert_allclose(batched, single, rtol=1e-6)
    np.testing.assert_allclose(batched, expected, rtol=1e-5, atol=1e-4)
    grads = jitted(objective.fn, batched=True, grad=True)(points)
    assert grads.shape == points.shape
    assert np.all(np.isfinite(grads))
    grad = jitted(objective.fn, grad=True)(points[0])
    # float32 Rosenbrock gradients of ~1e5 cancel to ~1e2 in some coordinates.
    np.testing.assert_allclose(grads[0], grad, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(grad))))


def test_output_dtype_follows_input():
    for objective in OBJECTIVES.values():
        for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
            out = jax.eval_shape(objective.fn, jax.ShapeDtypeStruct((3,), dtype))
            assert out.shape == ()
            assert out.dtype == dtype
    with jax.enable_x64(True):
        out = jax.eval_shape(objectives.ackley, jax.ShapeDtypeStruct((3,), jnp.float64))
        assert out.dtype == jnp.float64


def test_init_draws_uniformly_within_bounds():
    for objective in OBJECTIVES.values():
        low, high = objective.bounds
        key = jax.random.key(0)
        x = objective.init(key, 1000)
        assert x.shape == (1000,)
        assert x.dtype == jnp.float32
        x = np.asarray(x)
        assert x.min() >= np.float32(low)  # the bounds as rounded to float32
        assert x.max() <= np.float32(high)
        margin = 0.05 * (high - low)  # 1000 uniform draws reach both ends
        assert x.min() < low + margin
        assert x.max() > high - margin
        np.testing.assert_array_equal(x, objective.init(key, 1000))
        assert not np.array_equal(x, objective.init(jax.random.key(1), 1000))
    assert objectives.get("sphere").init(jax.random.PRNGKey(0), 3).shape == (3,)


# Errors.


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_name_x(name):
    objective = OBJECTIVES[name]
    fn = objective.fn
    with pytest.raises(ValueError, match=rf"{name}: x must be a 1-D array.*shape \(2, 3\).*vmap"):
        jax.eval_shape(fn, jax.ShapeDtypeStruct((2, 3), jnp.float32))
    with pytest.raises(ValueError, match=r"x must be a 1-D array.*shape \(2, 3\)"):
        jax.jit(fn)(np.zeros((2, 3), np.float32))  # at trace time, inside jit
    with pytest.raises(ValueError, match=r"x must be a 1-D array.*shape \(\)"):
        fn(1.0)
    with pytest.raises(TypeError, match=r"x must have a floating dtype.*int32"):
        fn(np.arange(3, dtype=np.int32))
    with pytest.raises(TypeError, match=r"x must have a floating dtype.*bool"):
        fn(np.ones(3, bool))
    with pytest.raises(TypeError, match=r"x must be a 1-D float array.*str"):
        fn("abc")
    with pytest.raises(ValueError, match=rf"with d >= {objective.min_dim}, got shape \(0,\)"):
        fn(np.zeros(0, np.float32))


def test_rosenbrock_needs_two_coordinates():
    rosenbrock = OBJECTIVES["rosenbrock"]
    with pytest.raises(ValueError, match=r"rosenbrock: x must have shape \(d,\) with d >= 2"):
        rosenbrock.fn(np.zeros(1, np.float32))
    for method in (rosenbrock.optimum, rosenbrock.optimal_value):
        with pytest.raises(ValueError, match="d must be an int >= 2, got 1"):
            method(1)
    with pytest.raises(ValueError, match="d must be an int >= 2, got 1"):
        rosenbrock.init(jax.random.key(0), 1)


def test_bad_dimension_names_d():
    sphere = OBJECTIVES["sphere"]
    with pytest.raises(ValueError, match="d must be an int >= 1, got 0"):
        sphere.optimum(0)
    with pytest.raises(TypeError, match=r"d must be an int >= 1, got 2\.0"):
        sphere.optimal_value(2.0)
    with pytest.raises(TypeError, match="d must be an int >= 1, got True"):
        sphere.init(jax.random.key(0), True)
