"""Box bounds: pycma's BoxConstraintsLinQuadTransformation is the oracle for the transform
and its inverse; the penalty is checked against its formula and for never calling f
outside the box; bad bounds get errors naming the argument."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cma.transformations import BoxConstraintsLinQuadTransformation

from es_toolkit.bounds import Bounds, from_box, into_box, make_bounds, penalized, project

INF = np.inf


def random_bounds(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of every kind: both finite at scales 1e-2 to 1e3 (some narrower than their
    margin, where pycma's map has no linear part), one-sided and unbounded."""
    lower = rng.standard_normal(n) * 10.0 ** rng.integers(-2, 4, n)
    upper = lower + np.exp(2 * rng.standard_normal(n))
    upper[::7] = lower[::7] + 1e-3  # |lower| / 20 can exceed half the width
    lower[1::6] = -INF
    upper[2::6] = INF
    lower[3::6], upper[3::6] = -INF, INF
    return lower, upper


def pycma(lower: np.ndarray, upper: np.ndarray) -> BoxConstraintsLinQuadTransformation:
    return BoxConstraintsLinQuadTransformation(
        [
            [None if np.isinf(lo) else lo, None if np.isinf(hi) else hi]
            for lo, hi in zip(lower, upper, strict=True)
        ]
    )


def test_pycma_docstring_example():
    """pycma's own example (bounds [1, 2] then [1, 11], margin_width2): a closed check."""
    bounds = make_bounds(([1.0] + 5 * [1.0], [2.0] + 5 * [11.0]), jnp.full(6, 1.5))
    x = jnp.array([1.52, -2.2, -0.2, 2, 4, 10.4])
    np.testing.assert_allclose(into_box(bounds, x), [1.52, 4.1, 2.1, 2.0, 4.0, 10.4], rtol=1e-6)


def candidate_points(rng, lower, upper, tf, count):
    """``count`` rows of points per coordinate: near each bound and its margin, exactly on
    the kinks, and up to 1e6 box widths away."""
    al, au = tf._al, tf._au
    finite_lo = np.where(np.isfinite(lower), lower, upper - 10)
    finite_lo = np.where(np.isfinite(finite_lo), finite_lo, -10)
    finite_hi = np.where(np.isfinite(upper), upper, finite_lo + 10)
    width = finite_hi - finite_lo
    rows = [
        rng.uniform(finite_lo - 4 * al, finite_hi + 4 * au, (count, lower.size)),
        (width + 1) * rng.standard_normal((count, lower.size)) * 10.0 ** rng.uniform(0, 6),
        np.stack([finite_lo - al, finite_lo + al, finite_hi - au, finite_hi + au]),
        np.stack([finite_lo, finite_hi, finite_lo - 3 * al, finite_hi + 3 * au]),
    ]
    return np.concatenate(rows)


def test_into_box_matches_pycma():
    """Agrees with pycma's ``transform`` on 60 coordinates of every kind of bound times 404
    points: in float64 both compute the same formulas, up to rounding of |x| ~ 1e6 width
    in the period shift (pycma subtracts p * floor((x - s) / p), this the remainder)."""
    rng = np.random.default_rng(0)
    lower, upper = random_bounds(rng, 60)
    tf = pycma(lower, upper)
    points = candidate_points(rng, lower, upper, tf, 200)
    expected = np.stack([tf.transform(row) for row in points])
    with jax.enable_x64(True):
        bounds = make_bounds((lower, upper), jnp.asarray(np.clip(0.0, lower, upper)))
        actual = np.asarray(jax.vmap(lambda x: into_box(bounds, x))(jnp.asarray(points)))
    scale = np.abs(points) + np.where(np.isfinite(upper - lower), upper - lower, 1)
    assert np.all(np.abs(actual - expected) <= 1e-12 * scale + 1e-13 * np.abs(expected))


def test_from_box_matches_pycma_inverse():
    """Agrees with pycma's ``inverse`` on points of the box, its bounds and its kinks."""
    rng = np.random.default_rng(1)
    lower, upper = random_bounds(rng, 60)
    tf = pycma(lower, upper)
    inside = np.clip(candidate_points(rng, lower, upper, tf, 100), lower, upper)
    expected = np.stack([np.array(tf.inverse(row)) for row in inside])
    with jax.enable_x64(True):
        bounds = make_bounds((lower, upper), jnp.asarray(np.clip(0.0, lower, upper)))
        actual = np.asarray(jax.vmap(lambda y: from_box(bounds, y))(jnp.asarray(inside)))
    np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_into_box_always_inside(dtype):
    """Every point, up to 1e30 away, lands in the box, in its own dtype."""
    rng = np.random.default_rng(2)
    lower, upper = random_bounds(rng, 60)
    points = rng.standard_normal((300, 60)) * 10.0 ** rng.uniform(-3, 30, (300, 1))
    with jax.enable_x64(True):
        x = jnp.asarray(points, dtype)
        bounds = make_bounds((lower, upper), jnp.asarray(np.clip(0.0, lower, upper), dtype))
        y = jax.jit(jax.vmap(lambda x: into_box(bounds, x)))(x)
        assert y.dtype == jnp.dtype(dtype)
        y, lo, hi = np.asarray(y), np.asarray(bounds.lower), np.asarray(bounds.upper)
    assert np.all((lo <= y) & (y <= hi))


def test_boundary_reached_at_finite_points():
    """The bounds are attained at l - a_l and u + a_u, so a search can sit on them."""
    with jax.enable_x64(True):
        bounds = make_bounds((-2.0, 40.0), jnp.zeros(()))
        # a_l = max(1, 2) / 20, a_u = min(21, 40 / 20)
        np.testing.assert_array_equal(into_box(bounds, jnp.array([-2.1, 42.0])), [-2.0, 40.0])
        np.testing.assert_array_equal(from_box(bounds, jnp.array([-2.0, 40.0])), [-2.1, 42.0])


def test_inverse_round_trips():
    """T(T^-1(y)) = y on the whole box; T^-1(T(x)) = x in the invertible domain, exactly
    in the linear interior and to 1e-9 relative away from the folds at l - a_l, u + a_u
    (near a fold, T is flat and loses the digits the square root would need)."""
    rng = np.random.default_rng(3)
    lower, upper = random_bounds(rng, 60)
    tf = pycma(lower, upper)
    with jax.enable_x64(True):
        bounds = make_bounds((lower, upper), jnp.asarray(np.clip(0.0, lower, upper)))
        lo_fold = np.where(np.isfinite(upper), upper - 1e3, -1e3)
        lo_fold = np.where(np.isfinite(lower), lower - 0.9 * tf._al, lo_fold)
        hi_fold = np.where(np.isfinite(upper), upper + 0.9 * tf._au, lo_fold + 2e3)
        x = rng.uniform(lo_fold, hi_fold, (200, 60))
        back = np.asarray(from_box(bounds, into_box(bounds, jnp.asarray(x))))
        interior = (x >= lower + tf._al) & (x <= upper - tf._au)
        np.testing.assert_array_equal(back[interior], x[interior])
        np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
        y = np.clip(candidate_points(rng, lower, upper, tf, 100), lower, upper)
        again = np.asarray(into_box(bounds, from_box(bounds, jnp.asarray(y))))
    np.testing.assert_allclose(again, y, rtol=1e-14, atol=1e-14)


def test_pytrees_jit_and_vmap():
    """Elementwise over a pytree; jit and vmap give the eager values; float32 stays float32."""
    x0 = {"w": jnp.zeros((2, 3)), "b": jnp.full((3,), 0.5)}
    bounds = make_bounds(({"w": -jnp.ones((2, 3)), "b": 0.0}, 1.0), x0)
    assert bounds.upper["w"].shape == (2, 3)
    batch = jax.tree.map(lambda a: 3 * jax.random.normal(jax.random.key(0), (5, *a.shape)), x0)
    eager = [into_box(bounds, jax.tree.map(lambda a, i=i: a[i], batch)) for i in range(5)]
    mapped = jax.jit(jax.vmap(lambda x: into_box(bounds, x)))(batch)
    for i, tree in enumerate(eager):
        for leaf, mapped_leaf in zip(jax.tree.leaves(tree), jax.tree.leaves(mapped), strict=True):
            assert leaf.dtype == jnp.float32
            np.testing.assert_allclose(mapped_leaf[i], leaf, rtol=1e-6, atol=1e-6)
    back = jax.jit(lambda y: from_box(bounds, y))(x0)
    np.testing.assert_allclose(back["b"], 0.5, rtol=1e-6)  # interior: identity


def test_unbounded_side_is_identity_and_gradients_finite():
    """No bound on a side: no change there; derivatives stay finite (no inf - inf in the
    branches that are masked off)."""
    bounds = make_bounds((None, [INF, 1.0, 1.0]), jnp.zeros(3))
    x = jnp.array([-1e6, -1e6, 0.99])
    np.testing.assert_array_equal(into_box(bounds, x)[:2], x[:2])
    grad = jax.grad(lambda x: jnp.sum(into_box(bounds, x)))(x)
    assert np.all(np.isfinite(grad))
    grad = jax.grad(lambda y: jnp.sum(from_box(bounds, y)))(jnp.array([0.0, -3.0, 0.5]))
    assert np.all(np.isfinite(grad))


def test_float64_under_x64():
    """With x64, float64 points stay float64 and match pycma to float64 precision."""
    tf = pycma(np.array([0.1]), np.array([0.3]))
    x = np.array([0.3 + 1e-9, -7.123456789])
    with jax.enable_x64(True):
        bounds = make_bounds((0.1, 0.3), jnp.asarray(0.2))
        y = into_box(bounds, jnp.asarray(x))
        assert y.dtype == jnp.float64
        assert bounds.lower.dtype == jnp.float64
    np.testing.assert_allclose(y, [tf.transform(np.array([v]))[0] for v in x], rtol=1e-15)
    assert jnp.asarray(1.0).dtype == jnp.float32  # x64 did not leak


def test_penalized_value_and_f_only_inside():
    """f(Pi(x)) + w |x - Pi(x)|^2, and f only ever sees points of the box (recorded from
    inside the jitted, vmapped call)."""
    lower, upper = np.array([-1.0, 0.0, -INF]), np.array([1.0, INF, 2.0])
    bounds = make_bounds((lower, upper), jnp.zeros(3))
    seen = []

    def f(x):
        jax.debug.callback(lambda v: seen.append(np.asarray(v)), x)
        return jnp.sum(jnp.sin(3 * x)) + x[0]

    points = 5 * jax.random.normal(jax.random.key(1), (64, 3))
    values = jax.jit(jax.vmap(penalized(f, bounds, weight=2.5)))(points)
    jax.effects_barrier()
    seen = np.concatenate([np.reshape(v, (-1, 3)) for v in seen])
    assert seen.shape == (64, 3)
    assert np.all((lower <= seen) & (seen <= upper))
    p = np.asarray(points)
    clipped = np.clip(p, lower, upper)
    expected = np.sum(np.sin(3 * clipped), 1) + clipped[:, 0] + 2.5 * np.sum((p - clipped) ** 2, 1)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(project(bounds, points), clipped.astype(np.float32))


def test_penalized_keeps_minimizer_in_box():
    """Outside, the penalty only adds: the penalized minimum over a grid is f's minimum over
    the box, at the same point."""
    bounds = make_bounds((0.5, 2.0), jnp.ones(()))
    grid = jnp.linspace(-3.0, 5.0, 8001)
    values = jax.vmap(penalized(lambda x: (x - 3.0) ** 2, bounds, weight=1e-3))(grid)
    assert float(grid[jnp.argmin(values)]) == pytest.approx(2.0, abs=1e-3)
    assert float(values.min()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("bounds", "x0", "error", "message"),
    [
        (1.0, jnp.zeros(2), TypeError, "bounds must be a pair (lower, upper)"),
        ((0.0, 1.0, 2.0), jnp.zeros(2), TypeError, "bounds must be a pair"),
        (
            ({"a": 0.0}, 1.0),
            jnp.zeros(2),
            ValueError,
            "bounds[0] must be a number, None or a pytree with the structure of x0",
        ),
        ((jnp.zeros(3), 1.0), jnp.zeros(2), ValueError, "bounds[0] must have shape (2,) like x0"),
        (
            (-1.0, {"w": jnp.ones(2), "b": jnp.ones(4)}),
            {"w": jnp.zeros(2), "b": jnp.zeros(3)},
            ValueError,
            "bounds[1]['b'] must have shape (3,) like x0['b']",
        ),
        ((-1.0, "a"), jnp.zeros(2), TypeError, "bounds[1] must be a real number or array, got 'a'"),
        ((-1.0, True), jnp.zeros(2), TypeError, "bounds[1] must be a real number"),
        (
            (np.array([0.0, np.nan]), 1.0),
            np.zeros(2, np.float32),
            ValueError,
            "bounds[0][1] is NaN; use None or an infinity for no bound.",
        ),
        (
            (np.array([0.0, 3.0]), 1.0),
            jnp.zeros(2),
            ValueError,
            "bounds: each lower bound must be below its upper bound, "
            "but at x0[1] lower=3.0 >= upper=1.0",
        ),
        ((1.0, 1.0), jnp.ones(()), ValueError, "at x0 lower=1.0 >= upper=1.0"),
        (
            (0.0, {"w": jnp.array([[1.0, 4.0]])}),
            {"w": jnp.array([[0.5, 5.0]])},
            ValueError,
            "x0 is outside bounds: x0['w'][0, 1]=5.0 > upper 4.0",
        ),
        (
            (-1.0, None),
            jnp.array([0.0, -2.0]),
            ValueError,
            "x0 is outside bounds: x0[1]=-2.0 < lower -1.0",
        ),
        ((-1.0, 1.0), jnp.array([jnp.nan]), ValueError, "x0[0]=nan is not in [-1.0, 1.0]"),
        ((-1.0, 1.0), jnp.zeros(2, jnp.int32), TypeError, "x0 must have a floating dtype"),
    ],
)
def test_bad_bounds(bounds, x0, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make_bounds(bounds, x0)


def test_make_bounds_broadcasts_and_accepts_bounds():
    """Numbers and None fill x0's shapes and dtype; a Bounds passes through unchanged."""
    x0 = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(())}
    bounds = make_bounds((None, 3), x0)
    assert isinstance(bounds, Bounds)
    np.testing.assert_array_equal(bounds.lower["w"], np.full((2, 2), -INF))
    np.testing.assert_array_equal(bounds.upper["b"], 3.0)
    assert bounds.upper["w"].dtype == jnp.float32
    again = make_bounds(bounds, x0)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(bounds), strict=True):
        np.testing.assert_array_equal(a, b)
