"""Restart schedules: IPOP and BIPOP against a transcription of pycma's ``fmin`` loop, and
minimize with restarts: reproducible, resumable, within budget, one compilation per size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

from es_toolkit import Restarts, minimize, optimize, restarts
from es_toolkit.strategies import snes
from es_toolkit.strategies.cma_es import cma_es

KEY = jax.random.key(3)


def pycma_schedule(kind, base, evaluations, uniforms, max_restarts=9):
    """pycma 4.5's ``fmin`` restart bookkeeping (evolution_strategy.py), line for line:
    ``(popsize, sigma_factor, maxiter)`` of every run after the first, given the
    evaluations each run used and the two uniform draws of each small run."""
    runs_with_small, small_i, large_i = 0, [], []
    poptype, plans = "small", []
    for irun, used in enumerate(evaluations, start=1):
        if kind == "bipop":
            (small_i if poptype == "small" else large_i).append(used)
        if irun - runs_with_small > max_restarts:
            break
        if kind == "bipop" and sum(small_i) < max(1, sum(large_i)):
            poptype = "small"
            runs_with_small += 1
            u_size, u_sigma = uniforms[irun]
            multiplier = 2 ** (irun - runs_with_small)
            popsize = int(base * multiplier ** (u_size**2))
            maxiter = 0.5 * sum(large_i) / popsize
            plans.append((popsize, 0.01**u_sigma, int(np.ceil(maxiter))))
        else:
            poptype = "large"
            plans.append((base * 2 ** (irun - runs_with_small), 1.0, None))
    return plans


def our_schedule(kind, base, evaluations, max_restarts=9):
    schedule = Restarts(kind, max_restarts)
    run, plans, uniforms = restarts.first_run(base), [], {}
    for used in evaluations:
        index = int(run.index) + 1
        uniforms[index] = restarts._uniforms(restarts.run_key(KEY, index))
        plan, run = restarts.plan_next(schedule, run, base, used, KEY)
        if plan is None:
            break
        plans.append(tuple(plan))
        limit = restarts.NO_LIMIT if plan.max_generations is None else plan.max_generations
        run = run._replace(generation_limit=jnp.asarray(limit, jnp.int32))
    return plans, uniforms


@pytest.mark.parametrize("kind", ["ipop", "bipop"])
def test_schedule_is_pycmas(kind):
    evaluations = [400, 900, 150, 120, 5000, 60, 700, 90, 30, 12000, 40, 50, 3000, 80, 20000]
    evaluations += [100] * 10
    ours, uniforms = our_schedule(kind, 10, evaluations)
    expected = pycma_schedule(kind, 10, evaluations, uniforms)
    assert len(ours) == len(expected)
    for got, want in zip(ours, expected, strict=True):
        assert got[0] == want[0]
        assert got[1] == pytest.approx(want[1])
        assert got[2] == want[2]
    if kind == "ipop":
        assert [plan[0] for plan in ours] == [10 * 2**r for r in range(1, 10)]
    else:
        assert any(plan[2] is not None for plan in ours)  # small runs happened
        assert sum(plan[2] is None for plan in ours) == 9  # only large runs count


def bumpy(x):
    """Rastrigin in 2-d: many local minima, so CMA-ES with a small population converges
    to one and stops on its own criteria, and restarts have something to do."""
    return 10 * x.size + jnp.sum(x**2 - 10 * jnp.cos(2 * jnp.pi * x))


OPTIONS = {
    "restarts": "ipop",
    "max_evaluations": 6000,
    "num_generations": 5000,
    "evaluate_mean": False,
    "block_size": 40,
    "progress": False,
    "key": KEY,
}


def test_restarts_run_until_the_budget_reproducibly():
    strategy = cma_es(6, sigma=2.0)
    first = minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, **OPTIONS)
    again = minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, **OPTIONS)
    assert first.num_restarts >= 2
    assert first.num_evaluations <= 6000
    assert first.stop_reason in ("max_evaluations", "num_generations") or first.num_restarts == 9
    assert first.best_value == again.best_value
    assert_trees_equal(first.state, again.state)
    # The last run's population is the schedule's: 6 * 2**r for IPOP.
    assert first.state.mean.shape == (2,)
    sizes = {6 * 2**r for r in range(first.num_restarts + 1)}
    assert optimize._cached_block._cache_size() >= len(sizes)


def test_a_run_with_restarts_resumes_with_the_numbers_of_one_never_stopped():
    strategy = cma_es(6, sigma=2.0)
    straight = minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, **OPTIONS)
    saved = []

    def stop_after_a_restart(info):
        if int(info["checkpoint"].run.index) >= 2:
            saved.append(info["checkpoint"])
            return True
        return False

    minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, callback=stop_after_a_restart, **OPTIONS)
    rest = minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, start=saved[0], **OPTIONS)
    assert rest.num_restarts == straight.num_restarts
    assert rest.num_evaluations == straight.num_evaluations
    assert rest.best_value == straight.best_value
    assert_trees_equal(rest.state, straight.state)


def test_compiles_once_per_population_size():
    """A second run with the same f, strategy and options compiles nothing new."""
    strategy = cma_es(6, sigma=2.0)
    minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, **OPTIONS)
    before = optimize._cached_block._cache_size()
    minimize(bumpy, jnp.full(2, 1.0), strategy=strategy, **OPTIONS)
    assert optimize._cached_block._cache_size() == before


def test_bipop_interleaves_small_runs_with_a_generation_cap():
    capped = []

    def record(info):
        capped.append(int(info["checkpoint"].run.generation_limit) != restarts.NO_LIMIT)

    result = minimize(
        bumpy,
        jnp.full(2, 3.0),
        strategy=cma_es(6, sigma=2.0),
        callback=record,
        **{**OPTIONS, "restarts": Restarts("bipop", max_restarts=2), "max_evaluations": 8000},
    )
    assert result.num_restarts >= 3
    assert result.num_evaluations <= 8000
    assert any(capped)


def test_ipop_needs_a_rebuildable_strategy():
    strategy = snes(8)._replace(rebuild=None)
    with pytest.raises(ValueError, match="rebuildable"):
        minimize(bumpy, jnp.zeros(2), strategy=strategy, restarts="ipop", progress=False)


def test_a_run_cut_where_a_restart_is_due_resumes_with_that_restart():
    """Cut at the very generation where the first run stops on its own criteria: the
    checkpoint holds the finished run, and resuming starts the next run right away."""
    strategy = cma_es(6, sigma=2.0)
    options = {**OPTIONS, "max_evaluations": None}
    straight = minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, **options)
    first_stop = []

    def record(info):
        if int(info["checkpoint"].run.index) == 1 and not first_stop:
            first_stop.append(int(info["checkpoint"].run.first_generation))

    minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, callback=record, **options)
    cut = first_stop[0]
    saved = []
    head = minimize(
        bumpy,
        jnp.full(2, 3.0),
        strategy=strategy,
        callback=lambda info: saved.append(info["checkpoint"]),
        **{**options, "num_generations": cut},
    )
    assert (head.num_restarts, head.stop_reason) == (0, "num_generations")
    rest = minimize(bumpy, jnp.full(2, 3.0), strategy=strategy, start=saved[-1], **options)
    assert rest.num_evaluations == straight.num_evaluations
    assert rest.num_restarts == straight.num_restarts
    assert rest.best_value == straight.best_value
    assert_trees_equal(rest.state, straight.state)
