"""The bookkeeping of a search, shared by the jitted loop (``optimize``) and the ask/tell
object (``ask_tell``): where the search evaluates, the fitness it sees, the limits of a run,
why it stops and which run comes next.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import bounds as bounds_lib
from es_toolkit import restarts as restarts_lib
from es_toolkit.strategies import base, termination
from es_toolkit.strategies.open_es import open_es
from es_toolkit.types import PRNGKey, PyTree

BOUND_HANDLINGS = ("transform", "penalty")
RESTARTABLE = frozenset(
    termination.code(name)
    for name in termination.STOP_REASONS[1:]
    if name not in ("num_generations", "max_evaluations", "target", "callback")
)


class OptimizeResult(NamedTuple):
    best_params: PyTree  # the best point evaluated (a member or a mean), inside any bounds
    best_value: float  # f(best_params), in the caller's sign
    state: Any  # the strategy's final state (of the last run, in the search's coordinates)
    metrics: dict[str, np.ndarray]  # per generation, each of length num_generations
    num_generations: int  # generations run over all runs (fewer than asked when stopped)
    reached_target: bool
    num_evaluations: int = 0  # evaluations of f over all runs
    num_restarts: int = 0  # runs started after the first
    stop_reason: str = ""  # a name from termination.STOP_REASONS


class OptimizeState(NamedTuple):
    """Where an optimization stands between generations (the callback's ``"checkpoint"``):
    ``minimize(..., start=it)`` continues with the numbers of a run never stopped."""

    state: Any  # the strategy's state
    best_params: PyTree  # the best point so far (in the search's coordinates)
    best_fitness: jax.Array  # scalar in f's dtype, higher is better (-f for minimize)
    generation: jax.Array  # int32 scalar, generations done over all runs
    num_evaluations: jax.Array  # int32 scalar, evaluations of f so far
    run: restarts_lib.RunState  # the current run of a restart schedule


class Limits(NamedTuple):
    """Per-run values the jitted steps take as arguments (so they never recompile them)."""

    key: PRNGKey  # the run's key; generation g of the run uses fold_in(key, g)
    first_generation: jax.Array  # int32: where the run started, over all runs
    generation: jax.Array  # int32: stop once this many generations are done
    reason: jax.Array  # int32: the stop code for reaching it
    target: jax.Array  # fitness to reach
    box: Any  # bounds_lib.Bounds or None


def check_strategy(strategy: Any) -> base.EvolutionStrategy:
    """``strategy``, or ``open_es(64, sigma=0.1)`` for None."""
    if strategy is None:
        return open_es(64, sigma=0.1)
    if not isinstance(strategy, base.EvolutionStrategy):
        raise TypeError(f"strategy must be an EvolutionStrategy, got {type(strategy).__name__}.")
    return strategy


def check_bound_handling(bound_handling: str) -> None:
    if bound_handling not in BOUND_HANDLINGS:
        raise ValueError(
            f"bound_handling must be one of {', '.join(BOUND_HANDLINGS)}, got {bound_handling!r}."
        )


def check_restartable(restarts, strategy, x0) -> None:
    if restarts is None:
        return
    if strategy.rebuild is None:
        raise ValueError(
            "restarts rebuild the strategy with other population sizes, so strategy must "
            "come from a factory decorated with strategies.base.rebuildable (every "
            "es_toolkit strategy does)."
        )
    if restarts.kind == "bipop" and not hasattr(jax.eval_shape(strategy.init, x0), "sigma"):
        raise ValueError(
            "restarts='bipop' scales each small run's initial sigma, so the strategy's state "
            "must hold sigma; use restarts='ipop' for this strategy."
        )


def resume_template(
    strategy: base.EvolutionStrategy, x0: PyTree, fitness_dtype: Any = jnp.float32
) -> OptimizeState:
    """An :class:`OptimizeState` shaped like the checkpoints of a run of ``strategy`` from
    ``x0`` (its first run), to load a saved one into."""
    return OptimizeState(
        strategy.init(x0),
        x0,
        jnp.zeros((), fitness_dtype),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        restarts_lib.first_run(strategy.population_size),
    )


def first_state(strategy, x0, fitness_dtype) -> OptimizeState:
    """The start of a search: nothing evaluated yet, so no best value."""
    template = resume_template(strategy, x0, fitness_dtype)
    return template._replace(best_fitness=jnp.asarray(-jnp.inf, fitness_dtype))


def evaluation_point(bound_handling, box, params):
    """Where ``f`` is evaluated for a point of the search: inside the box, if any."""
    if bound_handling == "transform":
        return bounds_lib.into_box(box, params)
    if bound_handling == "penalty":
        return bounds_lib.project(box, params)
    return params


def penalty(bound_handling, box, params) -> jax.Array:
    """The squared distance of ``params`` to the box under ``"penalty"`` (else 0), taken
    off the fitness, so leaving the box never pays whichever the sign of ``f``."""
    if bound_handling != "penalty":
        return jnp.zeros(())
    inside = bounds_lib.project(box, params)
    outside = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), params, inside)
    return sum(jax.tree.leaves(outside))


def fitness_function(f, sign, bound_handling, box):
    """The fitness the strategy sees: ``sign * f`` at the evaluation point, less any
    penalty (``bounds.penalized``, for either sign)."""

    def fitness(params):
        value = sign * f(evaluation_point(bound_handling, box, params))
        return value - penalty(bound_handling, box, params).astype(jnp.result_type(value))

    return fitness


def strategy_of_run(strategy, run):
    size = int(run.population_size)
    return strategy if size == strategy.population_size else strategy.rebuild(population_size=size)


def generation_limit(run, state, num_generations, max_evaluations, per_generation):
    """``(generation, stop code)`` at which the current run stops at the latest: the first
    of ``num_generations``, the evaluation budget and the run's own cap."""
    candidates = [(num_generations, "num_generations")]
    if max_evaluations is not None:
        left = max_evaluations - int(state.num_evaluations)
        candidates.append((int(state.generation) + left // per_generation, "max_evaluations"))
    if int(run.generation_limit) != restarts_lib.NO_LIMIT:
        candidates.append((int(run.generation_limit), "maxiter"))
    limit, reason = min(candidates, key=lambda candidate: candidate[0])
    return limit, termination.code(reason)


def stop_before(state, limits) -> int:
    """The stop code of a search that may not start another generation (0: it may)."""
    if bool(state.best_fitness >= limits.target):
        return termination.code("target")
    if int(state.generation) >= int(limits.generation):
        return int(limits.reason)
    return 0


def stop_code(strategy, state, best_fitness, done, limits) -> jax.Array:
    """Why the run stops after this generation (0: it goes on): the target first, then the
    strategy's own criteria, then the generation limit."""
    code = jnp.where(done >= limits.generation, limits.reason, 0).astype(jnp.int32)
    if strategy.stop is not None:
        own = jnp.asarray(strategy.stop(state), jnp.int32)
        code = jnp.where(own != 0, own, code)
    return jnp.where(best_fitness >= limits.target, termination.code("target"), code)


def make_limits(
    key, run, search, strategy, *, num_generations, max_evaluations, evaluate_mean, target, box
) -> Limits:
    """The :class:`Limits` of the current run, given where ``search`` stands."""
    per_generation = strategy.population_size + int(evaluate_mean)
    limit, reason = generation_limit(run, search, num_generations, max_evaluations, per_generation)
    return Limits(
        restarts_lib.run_key(key, int(run.index)),
        run.first_generation,
        jnp.asarray(limit, jnp.int32),
        jnp.asarray(reason, jnp.int32),
        target,
        box,
    )


def restart_or_stop(restarts, strategy, run, current, search, stop, x0, key, limits_of):
    """After a generation that ended with stop code ``stop``: ``(run, strategy of the run,
    search, 0)`` of the next run of the schedule when the stop is one a restart follows and
    a limit leaves room for it; else the current ones and the stop code (that of the limit,
    when one leaves the next run no generation). ``limits_of(run, search, strategy)``."""
    if restarts is None or stop not in RESTARTABLE:
        return run, current, search, stop
    following = next_run(restarts, strategy, run, search, x0, key)
    if following is None:
        return run, current, search, stop
    following_run, following_strategy, state = following
    restarted = search._replace(state=state)
    blocked = stop_before(restarted, limits_of(following_run, restarted, following_strategy))
    if blocked:
        return run, current, search, blocked
    return following_run, following_strategy, restarted, 0


def next_run(restarts, strategy, run, search, x0, key):
    """``(run, strategy, strategy state)`` of the next run of the schedule after ``search``
    (an :class:`OptimizeState`-like tuple), or ``None`` when the schedule is spent."""
    evaluations = int(search.num_evaluations) - int(run.first_evaluations)
    plan, following = restarts_lib.plan_next(
        restarts, run, strategy.population_size, evaluations, key
    )
    if plan is None:
        return None
    current = strategy.rebuild(population_size=plan.population_size)
    state = current.init(x0)
    if plan.sigma_factor != 1.0:
        sigma = jax.tree.map(lambda s: (s * plan.sigma_factor).astype(s.dtype), state.sigma)
        state = state._replace(sigma=sigma)
    generation = int(search.generation)
    cap = plan.max_generations
    following = following._replace(
        first_generation=jnp.asarray(generation, jnp.int32),
        generation_limit=jnp.asarray(
            restarts_lib.NO_LIMIT if cap is None else generation + cap, jnp.int32
        ),
        first_evaluations=search.num_evaluations,
    )
    return following, current, state


def result(search, stop, metrics, sign, target_fitness, box, bound_handling) -> OptimizeResult:
    """The :class:`OptimizeResult` of a search (an :class:`OptimizeState`) that ended with
    stop code ``stop``, its best point mapped into the box."""
    best_params = search.best_params
    if box is not None:
        best_params = evaluation_point(bound_handling, box, best_params)
    return OptimizeResult(
        best_params=best_params,
        best_value=float(sign * search.best_fitness),
        state=search.state,
        metrics=metrics,
        num_generations=int(search.generation),
        reached_target=bool(search.best_fitness >= target_fitness),
        num_evaluations=int(search.num_evaluations),
        num_restarts=int(search.run.index),
        stop_reason=termination.STOP_REASONS[int(stop)],
    )


def best_of(candidates, best_params, best_fitness):
    """The best of ``(params, fitness)`` candidates and the best so far; non-finite fitness
    never counts."""
    dtype = best_fitness.dtype
    for params, value in candidates:
        value = jnp.where(jnp.isfinite(value), value, -jnp.inf).astype(dtype)
        best_params = tree_where(value > best_fitness, params, best_params)
        best_fitness = jnp.maximum(value, best_fitness)
    return best_params, best_fitness


def tree_where(condition: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)
