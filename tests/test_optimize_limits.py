"""minimize's budgets, stop reasons, precision and box bounds, counted inside f."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

from es_toolkit import minimize
from es_toolkit.strategies import open_es, snes


class Recorder:
    """Every point f was called at, seen from inside f (an io_callback per member)."""

    def __init__(self, f):
        self.points: list[np.ndarray] = []
        self.f = f

    def _record(self, x):
        self.points.append(np.array(x))
        return np.zeros((), np.float32)

    def __call__(self, x):
        token = io_callback(self._record, jax.ShapeDtypeStruct((), jnp.float32), x)
        return self.f(x) + 0 * token


def sphere(x):
    return jnp.sum(x**2)


@pytest.mark.parametrize(("evaluate_mean", "expected"), [(False, 48), (True, 45)])
def test_max_evaluations_is_a_budget_f_never_passes(evaluate_mean, expected):
    """8 members a generation: 6 generations fit 50 evaluations; with the mean evaluated
    too, 5 * 9 = 45 do. The count inside f is the one reported."""
    f = Recorder(sphere)
    result = minimize(
        f,
        jnp.ones(3),
        strategy=snes(8),
        max_evaluations=50,
        evaluate_mean=evaluate_mean,
        block_size=4,
        progress=False,
    )
    assert len(f.points) == expected
    assert result.num_evaluations == expected
    assert result.stop_reason == "max_evaluations"
    assert ("mean_value" in result.metrics) == evaluate_mean


def test_stop_reasons_name_what_stopped_the_run():
    options = {"strategy": snes(8), "progress": False, "block_size": 5}
    assert minimize(sphere, jnp.ones(3), num_generations=7, **options).stop_reason == (
        "num_generations"
    )
    reached = minimize(sphere, jnp.ones(3), num_generations=500, target=0.5, **options)
    assert (reached.stop_reason, reached.reached_target) == ("target", True)
    stopped = minimize(sphere, jnp.ones(3), callback=lambda info: True, **options)
    assert (stopped.stop_reason, stopped.num_generations) == ("callback", 5)
    assert (stopped.num_restarts, stopped.num_evaluations) == (0, 5 * 9)


def test_float64_x0_runs_in_float64_under_x64():
    """A target of 1e-12 above an optimum of 100 is below float32's resolution there
    (spacing 7.6e-6): only a float64 run can reach it."""
    with jax.enable_x64(True):

        def f(x):
            return 100.0 + jnp.sum((x - 0.5) ** 2)

        result = minimize(
            f,
            jnp.zeros(2, jnp.float64),
            strategy=snes(16, sigma=0.3),
            num_generations=2000,
            target=100.0 + 1e-12,
            progress=False,
        )
        assert result.state.mean.dtype == jnp.float64
        assert result.metrics["best_value"].dtype == np.float64
        assert result.reached_target
        assert 0 < result.best_value - 100.0 <= 1e-12


@pytest.mark.parametrize("handling", ["transform", "penalty"])
def test_bounds_keep_every_member_inside_and_find_the_nearest_boundary_point(handling):
    """The optimum (2, -3, 0.2) lies outside [-1, 0.5]^3 in two coordinates: the best
    point in the box is (0.5, -1, 0.2), and f never sees a point outside."""
    optimum = jnp.array([2.0, -3.0, 0.2])
    f = Recorder(lambda x: jnp.sum((x - optimum) ** 2))
    result = minimize(
        f,
        jnp.zeros(3),
        strategy=snes(8, sigma=0.5),
        num_generations=300,
        bounds=(-1.0, 0.5),
        bound_handling=handling,
        block_size=100,
        progress=False,
    )
    points = np.stack(f.points)
    assert points.min() >= -1.0
    assert points.max() <= 0.5
    np.testing.assert_allclose(result.best_params, [0.5, -1.0, 0.2], atol=1e-2)
    assert float(jnp.all((result.best_params >= -1) & (result.best_params <= 0.5)))


def test_bounds_accept_a_pytree_like_x0():
    x0 = {"a": jnp.zeros(2), "b": jnp.zeros(())}
    bounds = ({"a": jnp.array([-1.0, 0.0]), "b": -2.0}, {"a": jnp.array([1.0, 0.1]), "b": 2.0})
    result = minimize(
        lambda p: jnp.sum((p["a"] - 5.0) ** 2) + (p["b"] + 5.0) ** 2,
        x0,
        strategy=snes(8, sigma=0.3),
        num_generations=200,
        bounds=bounds,
        progress=False,
    )
    np.testing.assert_allclose(result.best_params["a"], [1.0, 0.1], atol=1e-2)
    np.testing.assert_allclose(result.best_params["b"], -2.0, atol=1e-2)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_evaluations": 0}, ValueError, "max_evaluations"),
        ({"evaluate_mean": 1}, TypeError, "evaluate_mean"),
        ({"bound_handling": "clip", "bounds": (0, 1)}, ValueError, "bound_handling"),
        ({"bounds": (2.0, 1.0)}, ValueError, "bound"),
        ({"bounds": (0.5, 1.0)}, ValueError, "x0"),
        ({"restarts": "sometimes"}, ValueError, "restarts"),
        ({"restarts": "bipop", "strategy": open_es(8)}, ValueError, "sigma"),
    ],
)
def test_bad_options_are_named(options, error, match):
    with pytest.raises(error, match=match):
        minimize(sphere, jnp.zeros(2), progress=False, **options)
