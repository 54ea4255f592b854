"""The ask/tell Optimizer: the numbers of the compiled loop, exact save/load, limits,
bounds and restarts, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from es_toolkit import maximize, minimize
from es_toolkit.ask_tell import Optimizer
from es_toolkit.checkpoint import CheckpointError
from es_toolkit.strategies import cma_es, open_es, snes

KEY = jax.random.key(3)


def sphere(x):
    return jnp.sum(x**2)


def numpy_sphere(x):
    return float(np.sum(np.asarray(x, np.float64) ** 2))


def run_loop(optimizer, f, generations=None):
    """Asks and tells until the optimizer stops (or for ``generations``)."""
    done = 0
    while not optimizer.stop() and (generations is None or done < generations):
        points = optimizer.ask()
        optimizer.tell([f(x) for x in points])
        done += 1
    return optimizer


@pytest.mark.parametrize("strategy", [snes(8, sigma=0.5), cma_es(8, sigma=0.5)])
def test_ask_tell_gives_the_numbers_of_the_compiled_loop(strategy):
    """The same members, fitness and updates as minimize's jitted blocks (up to float
    rounding: the compiled loop draws the noise once, tell draws it again)."""
    x0 = jnp.full(5, 2.0)
    compiled = minimize(sphere, x0, strategy=strategy, key=KEY, num_generations=30, progress=False)
    optimizer = Optimizer(strategy, x0, key=KEY, num_generations=30, evaluate_mean=True)
    run_loop(optimizer, lambda x: float(sphere(x)))
    result = optimizer.result
    assert result.num_generations == compiled.num_generations == 30
    assert result.num_evaluations == compiled.num_evaluations == 30 * 9
    np.testing.assert_allclose(
        result.metrics["best_value"], compiled.metrics["best_value"], rtol=1e-4
    )
    np.testing.assert_allclose(
        result.metrics["mean_value"], compiled.metrics["mean_value"], rtol=1e-4
    )
    np.testing.assert_allclose(result.best_params, compiled.best_params, rtol=1e-4)
    assert result.stop_reason == compiled.stop_reason == "num_generations"


def test_a_numpy_objective_is_minimized_with_cma_es():
    optimizer = Optimizer(cma_es(10, sigma=1.0), np.full(6, 3.0), key=KEY, target=1e-8)
    run_loop(optimizer, numpy_sphere, generations=2000)
    result = optimizer.result
    assert optimizer.stop_reason == "target"
    assert result.best_value <= 1e-8
    assert numpy_sphere(result.best_params) == pytest.approx(result.best_value, rel=1e-4)
    assert result.num_evaluations == 10 * result.num_generations


def test_maximize_flips_the_sign():
    optimizer = Optimizer(snes(8), np.zeros(3), key=KEY, maximize=True, num_generations=200)
    run_loop(optimizer, lambda x: -numpy_sphere(x - 1.0))
    assert optimizer.result.best_value > -1e-3
    np.testing.assert_allclose(optimizer.result.best_params, np.ones(3), atol=0.05)


def test_ask_again_before_tell_gives_the_same_points():
    optimizer = Optimizer(snes(6), np.zeros(4), key=KEY)
    first = optimizer.ask()
    assert first.shape == (6, 4)
    assert isinstance(first, np.ndarray)
    np.testing.assert_array_equal(optimizer.ask(), first)
    optimizer.tell([numpy_sphere(x) for x in first])
    assert not np.array_equal(optimizer.ask(), first)


def test_pytree_x0_asks_a_list_of_pytrees():
    x0 = {"w": np.ones((2, 2), np.float32), "b": np.zeros(3, np.float32)}
    optimizer = Optimizer(snes(6), x0, key=KEY, evaluate_mean=True)
    points = optimizer.ask()
    assert len(points) == optimizer.num_points == 7
    assert all(p["w"].shape == (2, 2) and p["b"].shape == (3,) for p in points)
    np.testing.assert_array_equal(points[-1]["w"], x0["w"])  # the mean comes last
    optimizer.tell([float(np.sum(p["w"] ** 2) + np.sum(p["b"] ** 2)) for p in points])
    assert optimizer.generation == 1


def test_save_and_load_continue_with_the_numbers_of_a_run_never_stopped(tmp_path):
    def make():
        return Optimizer(cma_es(8, sigma=0.5), np.full(4, 1.5), key=KEY, evaluate_mean=True)

    straight = run_loop(make(), numpy_sphere, generations=20)
    first = run_loop(make(), numpy_sphere, generations=12)
    first.ask()  # a pending ask is not saved: the loaded optimizer asks it again
    first.save(tmp_path / "search.npz")
    second = make().load(tmp_path / "search.npz")
    assert second.generation == 12
    run_loop(second, numpy_sphere, generations=8)
    assert second.result.best_value == straight.result.best_value
    np.testing.assert_array_equal(second.result.best_params, straight.result.best_params)
    np.testing.assert_array_equal(second.ask(), straight.ask())
    assert second.result.num_evaluations == straight.result.num_evaluations


def test_load_refuses_another_key_and_other_files(tmp_path):
    optimizer = run_loop(Optimizer(snes(6), np.ones(3), key=KEY), numpy_sphere, 2)
    optimizer.save(tmp_path / "search.npz")
    other = Optimizer(snes(6), np.ones(3), key=jax.random.key(4))
    with pytest.raises(ValueError, match="another key"):
        other.load(tmp_path / "search.npz")
    from es_toolkit.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other.npz", {"a": np.ones(2)}, {"format": "something"})
    with pytest.raises(CheckpointError, match="not an Optimizer checkpoint"):
        optimizer.load(tmp_path / "other.npz")


def test_limits_stop_the_search_with_their_reason():
    budget = Optimizer(snes(8), np.ones(3), key=KEY, max_evaluations=50)
    run_loop(budget, numpy_sphere)
    assert (budget.stop_reason, budget.result.num_evaluations) == ("max_evaluations", 48)
    capped = Optimizer(snes(8), np.ones(3), key=KEY, num_generations=3)
    run_loop(capped, numpy_sphere)
    assert (capped.stop_reason, capped.generation) == ("num_generations", 3)
    with pytest.raises(RuntimeError, match="stopped \\(num_generations\\)"):
        capped.ask()
    too_small = Optimizer(snes(8), np.ones(3), key=KEY, max_evaluations=5)
    assert too_small.stop()
    assert too_small.stop_reason == "max_evaluations"


@pytest.mark.parametrize("bound_handling", ["transform", "penalty"])
def test_asked_points_lie_in_the_bounds(bound_handling):
    optimizer = Optimizer(
        snes(16, sigma=2.0),
        np.full(3, 0.5),
        key=KEY,
        bounds=(0.0, 1.0),
        bound_handling=bound_handling,
        num_generations=150,
    )
    seen = []
    while not optimizer.stop():
        points = optimizer.ask()
        seen.append(points)
        optimizer.tell([numpy_sphere(x + 1.0) for x in points])  # optimum outside, at -1
    seen = np.concatenate(seen)
    assert seen.min() >= 0.0
    assert seen.max() <= 1.0
    assert optimizer.result.best_value == pytest.approx(3.0, abs=0.05)  # at the corner 0


def test_leaving_the_box_never_pays_when_maximizing_with_a_penalty():
    """The penalty lowers fitness for either sign: maximizing sum(x) in [0, 1]^3 ends at
    the corner 1, not beyond it (the compiled path and ask/tell agree)."""
    options = {"bounds": (0.0, 1.0), "bound_handling": "penalty", "key": KEY}
    compiled = maximize(
        jnp.sum,
        jnp.full(3, 0.5),
        strategy=snes(8),
        num_generations=150,
        progress=False,
        **options,
    )
    assert compiled.best_value == pytest.approx(3.0, abs=0.05)
    mean = compiled.state.mean
    assert float(jnp.max(mean)) < 1.5  # held near the box, not drifting away
    optimizer = Optimizer(snes(8), np.full(3, 0.5), maximize=True, num_generations=150, **options)
    run_loop(optimizer, lambda x: float(np.sum(x)))
    assert optimizer.result.best_value == pytest.approx(compiled.best_value, abs=1e-3)


def test_restarts_follow_the_schedule_of_the_compiled_loop():
    def rastrigin(x):
        return 10 * x.shape[0] + jnp.sum(x**2 - 10 * jnp.cos(2 * jnp.pi * x))

    x0 = jnp.full(2, 3.0)
    options = {"key": KEY, "max_evaluations": 3000, "restarts": "ipop"}
    compiled = minimize(rastrigin, x0, strategy=cma_es(6, sigma=0.5), progress=False, **options)
    optimizer = Optimizer(cma_es(6, sigma=0.5), x0, evaluate_mean=True, **options)
    run_loop(optimizer, lambda x: float(rastrigin(jnp.asarray(x))))
    result = optimizer.result
    assert compiled.num_restarts >= 2
    assert result.num_restarts == compiled.num_restarts
    assert result.num_evaluations == compiled.num_evaluations
    assert result.stop_reason == compiled.stop_reason == "max_evaluations"
    assert result.best_value == pytest.approx(compiled.best_value, rel=1e-3, abs=1e-5)


def test_bad_input_is_named():
    optimizer = Optimizer(snes(6), np.ones(3), key=KEY)
    with pytest.raises(RuntimeError, match="call ask\\(\\) first"):
        optimizer.tell(np.ones(6))
    optimizer.ask()
    with pytest.raises(ValueError, match="6 numbers, one per asked point"):
        optimizer.tell([1.0, 2.0])
    with pytest.raises(TypeError, match="values must be 6 real numbers"):
        optimizer.tell(["a"] * 6)
    with pytest.raises(TypeError, match="strategy must be an EvolutionStrategy"):
        Optimizer("snes", np.ones(3))
    with pytest.raises(ValueError, match="max_evaluations"):
        Optimizer(open_es(4), np.ones(3), max_evaluations=0)
    with pytest.raises(ValueError, match="bound_handling"):
        Optimizer(open_es(4), np.ones(3), bounds=(0, 1), bound_handling="clip")


def test_failed_values_rank_last():
    """NaN (a failed evaluation) never becomes the best and counts as non-finite."""
    optimizer = Optimizer(snes(6), np.ones(3), key=KEY)
    points = optimizer.ask()
    values = [numpy_sphere(x) for x in points]
    values[0] = float("nan")
    metrics = optimizer.tell(values)
    assert optimizer.result.best_value == pytest.approx(min(values[1:]), rel=1e-6)
    assert int(metrics["num_non_finite"]) == 1
