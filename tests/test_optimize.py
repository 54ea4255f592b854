"""minimize / maximize: sign, early stop, callbacks, chunking, dtypes, robustness, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

from es_toolkit import maximize, minimize
from es_toolkit.strategies import STRATEGIES, base, get_strategy, open_es, pgpe


def sphere(x):
    return jnp.sum(x**2)


def test_minimize_reaches_optimum_of_non_differentiable_function():
    """sum |x| has a kink at the optimum; OpenES with Adam gets within 0.05 of 0."""
    result = minimize(
        lambda x: jnp.sum(jnp.abs(x)), jnp.ones(5), num_generations=300, progress=False
    )
    assert result.best_value < 0.05
    assert float(jnp.sum(jnp.abs(result.best_params))) == pytest.approx(result.best_value, rel=1e-5)
    assert result.num_generations == 300
    assert all(len(v) == 300 for v in result.metrics.values())


def test_maximize_is_minimize_of_the_negation():
    """The sign lives in the name: same trajectory, opposite values."""
    options = {"num_generations": 60, "progress": False, "key": jax.random.key(4)}
    low = minimize(sphere, jnp.ones(4), **options)
    high = maximize(lambda x: -sphere(x), jnp.ones(4), **options)
    assert high.best_value == pytest.approx(-low.best_value)
    np.testing.assert_allclose(high.best_params, low.best_params)
    np.testing.assert_allclose(high.metrics["mean_value"], -low.metrics["mean_value"], rtol=1e-6)


def test_target_stops_early_and_callback_sees_every_block():
    calls = []
    result = minimize(
        sphere,
        jnp.ones(10),
        strategy=open_es(50, 0.05),
        num_generations=5000,
        target=1e-2,
        block_size=40,
        callback=calls.append,
        progress=False,
    )
    assert result.reached_target
    assert result.best_value <= 1e-2
    assert result.num_generations < 5000
    assert len(result.metrics["best_value"]) == result.num_generations
    assert calls[-1]["generation"] == result.num_generations
    assert sum(len(c["metrics"]["best_value"]) for c in calls) == result.num_generations
    # best_value never increases
    assert np.all(np.diff(result.metrics["best_value"]) <= 0)


def test_callback_can_stop():
    result = minimize(
        sphere,
        jnp.ones(3),
        num_generations=1000,
        block_size=10,
        callback=lambda info: True,
        progress=False,
    )
    assert result.num_generations == 10
    assert not result.reached_target


def test_chunked_evaluation_gives_the_same_run():
    options = {"strategy": open_es(30, 0.1), "num_generations": 20, "progress": False}
    whole = minimize(sphere, jnp.ones(6), **options)
    chunked = minimize(sphere, jnp.ones(6), chunk_size=8, **options)
    np.testing.assert_allclose(chunked.state.mean, whole.state.mean, rtol=1e-6)
    assert chunked.best_value == pytest.approx(whole.best_value, rel=1e-6)


def test_a_second_call_does_not_recompile():
    """The jitted block is cached on (f, strategy, options, shapes): a second call with
    another key, budget and target traces f no more (f is traced only by compilation;
    the one eager call per run evaluates x0)."""
    traces = []

    def counted(x):
        if isinstance(x, jax.core.Tracer):
            traces.append(1)
        return sphere(x)

    strategy = open_es(16, 0.1)
    options = {"strategy": strategy, "block_size": 10, "progress": False}
    first = minimize(counted, jnp.ones(3), num_generations=20, **options)
    compiled = len(traces)
    assert compiled > 0
    second = minimize(
        counted, jnp.ones(3), num_generations=30, key=jax.random.key(5), target=1e-9, **options
    )
    assert len(traces) == compiled
    assert second.num_generations == 30
    assert second.best_value != first.best_value
    maximize(lambda x: -counted(x), jnp.ones(3), num_generations=10, **options)
    assert len(traces) > compiled  # another f: compiled anew


def test_unhashable_objective_still_runs():
    class Unhashable:
        __hash__ = None

        def __call__(self, x):
            return sphere(x)

    result = minimize(Unhashable(), jnp.ones(3), num_generations=20, progress=False)
    assert result.num_generations == 20


def test_non_finite_values_are_ranked_worst_and_counted():
    """f is NaN outside the unit box: those members are ranked worst, the run stays finite."""

    def boxed(x):
        return jnp.where(jnp.all(jnp.abs(x) < 1.0), sphere(x), jnp.nan)

    result = minimize(
        boxed, jnp.full(3, 0.9), strategy=open_es(20, 0.2), num_generations=50, progress=False
    )
    assert result.metrics["num_non_finite"].sum() > 0
    assert np.isfinite(result.best_value)
    assert bool(jnp.all(jnp.isfinite(result.state.mean)))
    assert result.best_value < boxed(jnp.full(3, 0.9))


def test_pytree_parameters():
    def loss(p):
        return sphere(p["w"] - 1.0) + sphere(p["b"])

    result = minimize(
        loss, {"w": jnp.zeros((2, 3)), "b": jnp.ones(2)}, num_generations=300, progress=False
    )
    assert result.best_value < 0.05
    assert result.best_params["w"].shape == (2, 3)


def test_progress_goes_to_stderr(capsys):
    minimize(sphere, jnp.ones(2), num_generations=20, block_size=10)
    err = capsys.readouterr().err
    assert "generation  10/20" in err
    assert "generation  20/20" in err


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_generations": 0}, ValueError, "num_generations must be an int >= 1"),
        ({"block_size": 0}, ValueError, "block_size must be an int >= 1"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be an int >= 1"),
        ({"strategy": "open_es"}, TypeError, "strategy must be an EvolutionStrategy"),
        ({"x0": jnp.array([1, 2])}, TypeError, "x0 must have a floating dtype"),
    ],
)
def test_bad_input(kwargs, error, match):
    x0 = kwargs.pop("x0", jnp.ones(2))
    with pytest.raises(error, match=match):
        minimize(sphere, x0, progress=False, **kwargs)


# --- mixed float dtypes ----------------------------------------------------------------

MIXED = {"a": jnp.ones(3, jnp.float32), "b": jnp.ones(2, jnp.bfloat16)}


def mixed_sphere(params):
    return sum(jnp.sum(leaf.astype(jnp.float32) ** 2) for leaf in jax.tree.leaves(params))


def dtypes(tree):
    return jax.tree.map(lambda leaf: leaf.dtype, tree)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_mixed_float_leaves_keep_their_dtypes(name):
    """x0 mixing float32 and bfloat16 leaves runs with every strategy (it failed inside
    lax.cond: OpenES's Adam state was promoted to float32); each leaf of the result and of
    the state's mean keeps x0's dtype, and the run lowers f from f(x0) = 5. best_value
    matches f(best_params) to bfloat16 rounding only: XLA may skip the rounding of a member
    to bfloat16 when it fuses the member into f (xla_allow_excess_precision)."""
    result = minimize(
        mixed_sphere,
        MIXED,
        strategy=get_strategy(name)(16),
        num_generations=30,
        block_size=15,
        progress=False,
    )
    assert dtypes(result.best_params) == dtypes(MIXED)
    assert dtypes(result.state.mean) == dtypes(MIXED)
    assert result.best_value < 5.0
    assert result.best_value == pytest.approx(float(mixed_sphere(result.best_params)), rel=1e-2)


def test_maximize_with_mixed_float_leaves():
    result = maximize(lambda p: -mixed_sphere(p), MIXED, num_generations=20, progress=False)
    assert dtypes(result.best_params) == dtypes(MIXED)
    assert result.best_value > -5.0


# --- objectives that are not JAX-traceable -----------------------------------------------

NOT_TRACEABLE = {
    "numpy call": (lambda x: np.sum(np.sin(x)), jax.errors.TracerArrayConversionError),
    "math call": (lambda x: math.sqrt(x[0] ** 2), jax.errors.ConcretizationTypeError),
    "python if": (lambda x: x[0] if x[0] > 0 else -x[0], jax.errors.TracerBoolConversionError),
}


@pytest.mark.parametrize("run", [minimize, maximize])
@pytest.mark.parametrize("kind", sorted(NOT_TRACEABLE))
def test_objective_that_is_not_traceable_gets_one_clear_error(run, kind):
    """NumPy, math or a Python if on the input work on x0 (evaluated eagerly) but not when
    traced: the error names f, says how to write it, and chains JAX's own error."""
    f, cause = NOT_TRACEABLE[kind]
    with pytest.raises(TypeError, match="f must be JAX-traceable") as info:
        run(f, jnp.ones(3), num_generations=2, progress=False)
    assert "jnp.where" in str(info.value)
    assert "pass jit=False" in str(info.value)
    assert isinstance(info.value.__cause__, cause)


def test_other_errors_are_not_rewritten():
    """An error of f's own, and a tracing error of the strategy (not of f), reach the
    caller unchanged."""

    def failing(x):
        raise ValueError("my own error")

    with pytest.raises(ValueError, match="my own error"):
        minimize(failing, jnp.ones(3), num_generations=2, progress=False)
    inner = open_es(8)

    def concrete_tell(key, state, fitness):
        float(fitness[0])  # needs a concrete value: fails when traced
        return inner.tell(key, state, fitness)

    strategy = base.EvolutionStrategy(inner.init, inner.ask, concrete_tell, 8)
    with pytest.raises(jax.errors.ConcretizationTypeError):
        minimize(sphere, jnp.ones(3), strategy=strategy, num_generations=2, progress=False)


def test_objective_must_return_a_scalar():
    with pytest.raises(TypeError, match=r"f must return a scalar, got .* shape \(3,\)"):
        minimize(lambda x: x**2, jnp.ones(3), num_generations=2, progress=False)


# --- chunk sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [3, 7])
def test_odd_chunk_size_with_antithetic_pairs_shows_the_value(chunk_size):
    """The check used to run on a traced chunk start and print ``JitTracer(int32[])``."""
    with pytest.raises(ValueError, match=rf"chunk_size must be even.*got {chunk_size}\.") as info:
        minimize(sphere, jnp.ones(3), strategy=open_es(64), chunk_size=chunk_size, progress=False)
    assert "Tracer" not in str(info.value)


def test_small_problems_are_not_chunked_and_keep_their_numbers():
    """By default a small problem is evaluated whole: the same numbers, bit for bit, as
    with no memory budget at all; a tiny budget chunks it (4 members of 6 float32 at a
    time) and changes them only by float rounding."""
    options = {"strategy": open_es(30, 0.1), "num_generations": 20, "progress": False}
    default = minimize(sphere, jnp.ones(6), **options)
    unlimited = minimize(sphere, jnp.ones(6), memory_budget=None, **options)
    tiny = minimize(sphere, jnp.ones(6), memory_budget=4 * 6 * 4, **options)
    np.testing.assert_array_equal(default.state.mean, unlimited.state.mean)
    np.testing.assert_array_equal(default.metrics["best_value"], unlimited.metrics["best_value"])
    np.testing.assert_allclose(tiny.state.mean, unlimited.state.mean, rtol=1e-6)
    assert tiny.best_value == pytest.approx(unlimited.best_value, rel=1e-6)


def test_bad_memory_budget_is_named():
    with pytest.raises(ValueError, match="memory_budget must be an int >= 1, got 0"):
        minimize(sphere, jnp.ones(2), memory_budget=0, progress=False)


def test_start_continues_a_run_with_the_numbers_of_one_never_stopped():
    """A run stopped by its callback after the first block and continued from the
    callback's checkpoint ends where a run of all the generations in one go ends."""
    f = lambda x: jnp.sum(jnp.abs(x - 1.0))  # noqa: E731
    options = {"strategy": pgpe(16, sigma=0.3), "progress": False, "block_size": 5}
    straight = minimize(f, jnp.zeros(4), num_generations=12, **options)
    saved = []

    def stop_after_one_block(info):
        saved.append(info["checkpoint"])
        return True

    first = minimize(f, jnp.zeros(4), num_generations=12, callback=stop_after_one_block, **options)
    assert first.num_generations == 5
    assert int(saved[0].generation) == 5
    rest = minimize(f, jnp.zeros(4), num_generations=12, start=saved[0], **options)
    assert rest.num_generations == 12
    assert len(rest.metrics["best_value"]) == 7  # this call's generations only
    assert_trees_equal(rest.state, straight.state)
    assert rest.best_value == straight.best_value
    done = minimize(f, jnp.zeros(4), num_generations=12, start=saved[0]._replace(generation=12))
    assert done.num_generations == 12
    assert done.metrics == {}
