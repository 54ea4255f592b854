"""minimize/maximize with jit=False: plain Python objectives, with the compiled path's numbers,
limits, restarts, bounds, callbacks, resume and failure handling."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _evaluator_objectives import fails_below_zero, wavy, wavy_batch

from es_toolkit import maximize, minimize
from es_toolkit.evaluators import EvaluationError
from es_toolkit.strategies import cma_es, snes

KEY = jax.random.key(5)
QUIET = {"progress": False, "key": KEY}


def branchy(x):
    """A sphere JAX cannot trace: a Python if on a value and math.fsum."""
    x = np.asarray(x, np.float64)
    if x[0] > 0:
        return math.fsum(x**2)
    return math.fsum(x**2) + 0.0


def test_a_python_objective_gives_the_numbers_of_the_compiled_path():
    compiled = minimize(
        lambda x: jnp.sum(x**2), jnp.full(4, 2.0), strategy=snes(8), num_generations=25, **QUIET
    )
    python = minimize(
        branchy, np.full(4, 2.0), strategy=snes(8), num_generations=25, jit=False, **QUIET
    )
    assert python.num_evaluations == compiled.num_evaluations == 25 * 9
    np.testing.assert_allclose(
        python.metrics["best_value"], compiled.metrics["best_value"], rtol=1e-4
    )
    np.testing.assert_allclose(python.best_params, compiled.best_params, rtol=1e-4)
    assert python.metrics["failures"].tolist() == [0] * 25


def test_cma_es_with_bounds_and_restarts_on_a_python_objective():
    def rastrigin(x):
        x = np.asarray(x, np.float64)
        return float(10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))

    result = minimize(
        rastrigin,
        np.full(3, 2.5),
        strategy=cma_es(6, sigma=1.0),
        jit=False,
        bounds=(-5.12, 5.12),
        restarts="ipop",
        max_evaluations=4000,
        target=1e-6,
        **QUIET,
    )
    assert result.num_restarts >= 1
    assert result.best_value <= 1e-6
    assert result.stop_reason == "target"
    assert np.all(np.abs(result.best_params) <= 5.12)


def test_maximize_a_python_objective():
    result = maximize(
        lambda x: -branchy(np.asarray(x) - 1.0),
        np.zeros(3),
        strategy=snes(8),
        num_generations=150,
        jit=False,
        **QUIET,
    )
    assert result.best_value > -1e-3


def test_the_callback_checkpoints_every_generation_and_start_resumes_exactly():
    options = {"strategy": cma_es(8, sigma=0.5), "jit": False, **QUIET}
    straight = minimize(branchy, np.full(3, 1.0), num_generations=12, **options)
    checkpoints = {}

    def keep(info):
        checkpoints[info["generation"]] = info["checkpoint"]
        assert {name: len(value) for name, value in info["metrics"].items()} == dict.fromkeys(
            info["metrics"], 1
        )

    minimize(branchy, np.full(3, 1.0), num_generations=7, callback=keep, **options)
    assert sorted(checkpoints) == list(range(1, 8))
    resumed = minimize(
        branchy, np.full(3, 1.0), num_generations=12, start=checkpoints[7], **options
    )
    assert resumed.best_value == straight.best_value
    np.testing.assert_array_equal(resumed.best_params, straight.best_params)
    np.testing.assert_array_equal(resumed.metrics["best_value"], straight.metrics["best_value"][7:])
    assert resumed.num_evaluations == straight.num_evaluations


def test_vectorized_batches_give_the_per_member_numbers():
    options = {"strategy": snes(8), "num_generations": 10, "jit": False, **QUIET}
    one_by_one = minimize(wavy, np.full(3, 1.0), **options)
    batched = minimize(wavy_batch, np.full(3, 1.0), vectorized=True, **options)
    np.testing.assert_allclose(batched.metrics["best_value"], one_by_one.metrics["best_value"])


def test_on_error_raise_names_the_member_and_keeps_the_last_generation():
    seen = []
    with pytest.raises(EvaluationError, match="the objective raised on member") as info:
        minimize(
            fails_below_zero,
            np.full(2, 0.3),
            strategy=snes(8, sigma=0.5),
            jit=False,
            callback=lambda info: seen.append(info["generation"]),
            **QUIET,
        )
    assert "ValueError: negative first coordinate" in str(info.value)
    assert "_check_sign" in str(info.value)  # the objective's traceback
    assert seen == list(range(1, len(seen) + 1))  # whole generations only


def test_on_error_worst_ranks_failures_last_and_counts_them():
    result = minimize(
        fails_below_zero,
        np.full(2, 0.3),
        strategy=snes(8, sigma=0.5),
        num_generations=20,
        jit=False,
        on_error="worst",
        **QUIET,
    )
    failures = result.metrics["failures"]
    assert failures.sum() > 0
    np.testing.assert_array_equal(result.metrics["num_non_finite"], failures)
    assert result.best_params[0] >= 0  # a failed member is never the best
    assert result.num_evaluations == 20 * 9  # failed evaluations count


def test_python_options_need_jit_false_and_compiled_options_need_jit():
    with pytest.raises(ValueError, match="workers, timeout apply to plain Python objectives"):
        minimize(jnp.sum, jnp.ones(2), workers=2, timeout=1.0, **QUIET)
    with pytest.raises(ValueError, match="mesh applies to compiled objectives"):
        minimize(branchy, np.ones(2), jit=False, mesh=1, **QUIET)
    with pytest.raises(ValueError, match="on_error must be one of raise, worst"):
        minimize(branchy, np.ones(2), jit=False, on_error="skip", **QUIET)
    with pytest.raises(TypeError, match="f must be callable"):
        minimize("branchy", np.ones(2), jit=False, **QUIET)
    with pytest.raises(TypeError, match=r"f must be JAX-traceable.*pass jit=False"):
        minimize(branchy, jnp.ones(2), num_generations=2, **QUIET)


def test_progress_shows_evaluations_per_second(capsys):
    minimize(
        functools.partial(branchy),
        np.ones(2),
        strategy=snes(4),
        num_generations=2,
        jit=False,
        key=KEY,
    )
    err = capsys.readouterr().err
    assert "evals_per_s=" in err
    assert "best=" in err
