"""Restart schedules: IPOP and BIPOP (Auger and Hansen 2005; Hansen 2009).

When a run of a strategy stops on its own criteria (``tolfun``, ``tolx``, ...), the optimize
loop starts a new run from ``x0``; these pure functions say with which population size,
initial sigma and generation cap, following pycma's ``fmin`` with ``restarts`` and ``bipop``:

* **IPOP**: run ``r`` has population ``lambda_0 * factor**r``.
* **BIPOP**: two regimes share the budget. The *large* regime doubles the population as IPOP
  does; the *small* regime draws :math:`\\lambda_s = \\lfloor \\lambda_0 m^{U_1^2} \\rfloor`
  (:math:`m` the multiplier of the current large population, :math:`U_i \\sim U(0, 1)`), an
  initial sigma :math:`\\sigma_0 \\cdot 0.01^{U_2}` and a cap of half the large regime's
  evaluations. A small run follows whenever the small regime has used fewer evaluations than
  the large one; the first run counts as small. Only large runs count against
  ``max_restarts``.

The bookkeeping is a :class:`RunState` of int32 scalars, so a run with restarts checkpoints
and resumes like any other; the random draws come from the run's key, so it is reproducible.

References:
    Auger, Hansen, "A Restart CMA Evolution Strategy With Increasing Population Size",
    CEC 2005.
    Hansen, "Benchmarking a BI-Population CMA-ES on the BBOB-2009 Function Testbed",
    GECCO 2009 workshop.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from es_toolkit._validate import check_int, check_positive_scalar
from es_toolkit.types import PRNGKey

KINDS = ("ipop", "bipop")
NO_LIMIT = 2**31 - 1  # a run's generation cap when it has none
_RESTART_STREAM = 0xFFFFFFFF  # fold_in data for restart keys; generations never reach it
_DRAWS_STREAM = 0xFFFFFFFE  # fold_in data for a restart's uniform draws


class Restarts(NamedTuple):
    """How to restart: ``kind`` ``"ipop"`` or ``"bipop"``, at most ``max_restarts`` runs
    after the first (BIPOP's small runs do not count), population growing by ``factor``."""

    kind: str = "bipop"
    max_restarts: int = 9
    factor: float = 2.0


class RunState(NamedTuple):
    """Where the restart schedule stands (int32 scalars; checkpointed with the run)."""

    index: jax.Array  # runs started before this one
    population_size: jax.Array  # of the current run
    first_generation: jax.Array  # generation (over all runs) at which it started
    generation_limit: jax.Array  # its generation cap (over all runs); NO_LIMIT for none
    first_evaluations: jax.Array  # evaluations done before it started
    small_runs: jax.Array  # BIPOP: small-regime runs started so far
    small_evaluations: jax.Array  # BIPOP: evaluations used by small runs (the first included)
    large_evaluations: jax.Array  # BIPOP: evaluations used by large runs


class NextRun(NamedTuple):
    population_size: int
    sigma_factor: float  # the new run's initial sigma is the strategy's times this
    max_generations: int | None  # its cap, None for none


def check_restarts(restarts: str | Restarts | None) -> Restarts | None:
    """``restarts`` as a checked :class:`Restarts`: a kind's name gets the defaults."""
    if restarts is None:
        return None
    if isinstance(restarts, str):
        restarts = Restarts(kind=restarts)
    if not isinstance(restarts, Restarts):
        raise TypeError(f"restarts must be None, 'ipop', 'bipop' or a Restarts, got {restarts!r}.")
    if restarts.kind not in KINDS:
        raise ValueError(f"restarts must be one of {', '.join(KINDS)}, got {restarts.kind!r}.")
    check_int("max_restarts", restarts.max_restarts, minimum=0)
    check_positive_scalar("factor", restarts.factor)
    if restarts.factor <= 1:
        raise ValueError(f"factor must be above 1, got {restarts.factor}.")
    return restarts


def first_run(population_size: int, generation: int = 0) -> RunState:
    def scalar(value):
        return jnp.asarray(value, jnp.int32)

    return RunState(
        index=scalar(0),
        population_size=scalar(population_size),
        first_generation=scalar(generation),
        generation_limit=scalar(NO_LIMIT),
        first_evaluations=scalar(0),
        small_runs=scalar(0),
        small_evaluations=scalar(0),
        large_evaluations=scalar(0),
    )


def run_key(key: PRNGKey, index: int) -> PRNGKey:
    """The key of run ``index``: the run's key itself for the first, derived after."""
    if index == 0:
        return key
    return jax.random.fold_in(jax.random.fold_in(key, _RESTART_STREAM), index)


def plan_next(
    restarts: Restarts,
    run: RunState,
    base_population: int,
    evaluations_of_run: int,
    key: PRNGKey,
) -> tuple[NextRun | None, RunState]:
    """The next run after ``run`` ended having used ``evaluations_of_run``, or ``None``
    when ``max_restarts`` is spent; and the bookkeeping with that run accounted.

    ``run.first_generation`` and ``generation_limit`` of the returned state are the caller's
    to set (they depend on where the loop stands).
    """
    index = int(run.index) + 1
    small_runs = int(run.small_runs)
    small_evals, large_evals = int(run.small_evaluations), int(run.large_evaluations)
    if restarts.kind == "bipop":
        if _was_small(run):
            small_evals += evaluations_of_run
        else:
            large_evals += evaluations_of_run
    accounted = run._replace(
        small_evaluations=jnp.asarray(small_evals, jnp.int32),
        large_evaluations=jnp.asarray(large_evals, jnp.int32),
    )
    if index - small_runs > restarts.max_restarts:
        return None, accounted
    small = restarts.kind == "bipop" and small_evals < max(1, large_evals)
    multiplier = restarts.factor ** (index - small_runs - (1 if small else 0))
    if not small:
        population = int(base_population * multiplier + 0.5)
        plan = NextRun(population, 1.0, None)
    else:
        u_size, u_sigma = _uniforms(run_key(key, index))
        population = max(2, int(base_population * multiplier ** (u_size**2)))
        cap = max(1, math.ceil(0.5 * large_evals / population))  # pycma: countiter >= cap
        plan = NextRun(population, 0.01**u_sigma, cap)
    state = accounted._replace(
        index=jnp.asarray(index, jnp.int32),
        population_size=jnp.asarray(plan.population_size, jnp.int32),
        small_runs=jnp.asarray(small_runs + (1 if small else 0), jnp.int32),
    )
    return plan, state


def _was_small(run: RunState) -> bool:
    """Whether ``run`` belonged to BIPOP's small regime: the first run does, and so does
    every run with a generation cap (only small runs get one)."""
    return int(run.index) == 0 or int(run.generation_limit) != NO_LIMIT


def _uniforms(key: PRNGKey) -> tuple[float, float]:
    draws = jax.random.uniform(jax.random.fold_in(key, _DRAWS_STREAM), (2,))
    return float(draws[0]), float(draws[1])
