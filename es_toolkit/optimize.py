"""Black-box optimization loops: ``maximize`` and ``minimize`` with any strategy.

The sign lives in the function name. Inside, every strategy maximizes fitness; ``minimize``
hands it ``-f`` and reports values of ``f``. Generations run jitted, ``block_size`` at a
time in a ``lax.scan``; between blocks the loop reports progress, calls the callback and
checks for early stopping. The jitted block is cached: a second call with the same ``f``,
``strategy``, ``chunk_size``, ``block_size`` and shapes does not compile again; per-run values
(keys, limits, the target, bounds) are its arguments, so restarts compile once per
population size.

A run stops at the target, at ``num_generations``, at the ``max_evaluations`` budget, when
the callback asks, or when the strategy's own criteria say it has converged (``tolx``,
``tolfun``, ...; see ``strategies.termination``); with ``restarts`` the last starts a new run.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import bounds as bounds_lib
from es_toolkit import parallel, population_shard
from es_toolkit import restarts as restarts_lib
from es_toolkit import sampling as sampling_lib
from es_toolkit._validate import (
    TRACING_ERRORS,
    check_bool,
    check_float_tree,
    check_int,
    check_optional_int,
    check_traceable,
)
from es_toolkit.progress import Progress
from es_toolkit.strategies import base, termination
from es_toolkit.strategies.open_es import open_es
from es_toolkit.types import PRNGKey, PyTree


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
    """Where an optimization stands between blocks (the callback's ``"checkpoint"``):
    ``minimize(..., start=it)`` continues with the numbers of a run never stopped."""

    state: Any  # the strategy's state
    best_params: PyTree  # the best point so far (in the search's coordinates)
    best_fitness: jax.Array  # scalar in f's dtype, higher is better (-f for minimize)
    generation: jax.Array  # int32 scalar, generations done over all runs
    num_evaluations: jax.Array  # int32 scalar, evaluations of f so far
    run: restarts_lib.RunState  # the current run of a restart schedule


class _Carry(NamedTuple):
    state: Any
    best_params: PyTree
    best_fitness: jax.Array
    generation: jax.Array
    num_evaluations: jax.Array
    stop: jax.Array  # int32 code into termination.STOP_REASONS, 0 while running


class _Limits(NamedTuple):
    """Per-run values the jitted block takes as arguments (so they never recompile it)."""

    key: PRNGKey  # the run's key; generation g of the run uses fold_in(key, g)
    first_generation: jax.Array  # int32: where the run started, over all runs
    generation: jax.Array  # int32: stop once this many generations are done
    reason: jax.Array  # int32: the stop code for reaching it
    target: jax.Array  # fitness to reach
    box: Any  # bounds_lib.Bounds or None


BOUND_HANDLINGS = ("transform", "penalty")
_RESTARTABLE = frozenset(
    termination.code(name)
    for name in termination.STOP_REASONS[1:]
    if name not in ("num_generations", "max_evaluations", "target", "callback")
)


def maximize(f: Callable[[PyTree], jax.Array], x0: PyTree, **options: Any) -> OptimizeResult:
    """Maximizes ``f`` from ``x0`` with an evolution strategy. See :func:`minimize`."""
    return _optimize(f, x0, sign=1.0, **options)


def minimize(
    f: Callable[[PyTree], jax.Array],
    x0: PyTree,
    *,
    strategy: base.EvolutionStrategy | None = None,
    num_generations: int = 1000,
    key: PRNGKey | None = None,
    chunk_size: int | None = None,
    target: float | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    block_size: int = 50,
    progress: bool = True,
    mesh: Any = None,
    memory_budget: int | None = sampling_lib.DEFAULT_MEMORY_BUDGET,
    start: OptimizeState | None = None,
    max_evaluations: int | None = None,
    restarts: str | restarts_lib.Restarts | None = None,
    evaluate_mean: bool = True,
    bounds: Any = None,
    bound_handling: str = "transform",
) -> OptimizeResult:
    """Minimizes ``f`` from ``x0`` with an evolution strategy.

    Args:
        f: a JAX-traceable function from a pytree of float arrays to a scalar (written
            with ``jax.numpy``; ``jnp.where`` or ``lax.cond`` instead of a Python ``if``);
            it need not be differentiable or even continuous.
        x0: the starting point (the strategy's initial mean), a pytree of float arrays
            whose leaves may differ in dtype (float32, bfloat16, ...): each keeps its own.
            Precision follows it: under ``jax_enable_x64`` a float64 ``x0`` (and ``f``)
            runs in float64, ``best_value`` included.
        strategy: an :class:`~es_toolkit.strategies.EvolutionStrategy`;
            ``open_es(64, sigma=0.1)`` by default.
        num_generations: the most generations to run (over all runs, counting those
            before ``start``).
        key: the run's key; generation ``g`` uses ``jax.random.fold_in(key, g)`` (each
            restart has a key derived from it). ``jax.random.key(0)`` by default.
        chunk_size: evaluate this many members at a time (memory O(chunk_size * d); even
            for antithetic strategies). ``None``: as many as ``memory_budget`` allows.
        target: stop once the best value is at most ``target`` (at least, for
            ``maximize``).
        callback: called after every block with a dict (``generation``, ``metrics`` of the
            block as NumPy arrays, ``best_value``, ``state``, and ``checkpoint``, an
            :class:`OptimizeState`); returning ``True`` stops.
        block_size: generations per jitted block (progress and callbacks in between).
        progress: print a progress line to standard error after every block.
        mesh: shard the population over devices: a device count, a sequence of devices or
            a 1-D ``Mesh`` with axis ``"pop"`` (see ``es_toolkit.parallel``); the result is
            the single-device one up to float rounding. ``None``: no sharding.
        memory_budget: with no ``chunk_size``, members are evaluated in the fewest chunks
            whose noise (members x parameters x itemsize) fits this many bytes: the whole
            population when it fits, and always with ``None``. The strategy's own update
            is chunked by its ``chunk_size`` (by default to the same 256 MiB).
        start: continue from an :class:`OptimizeState` (a callback's ``checkpoint``),
            with the same ``f``, ``x0``, strategy, key and options; ``metrics`` then cover
            only the generations run in this call.
        max_evaluations: a budget of evaluations of ``f`` (members, plus the mean and
            ``x0`` with ``evaluate_mean``), over all runs; a generation that would pass it
            does not start.
        restarts: ``"ipop"``, ``"bipop"`` or a :class:`~es_toolkit.restarts.Restarts`:
            when the strategy stops on its own criteria (``strategy.stop``), start again
            from ``x0`` with a population size (and, for BIPOP, an initial sigma) from the
            schedule, until ``max_restarts``, the budget, ``num_generations`` or the
            target. Needs a strategy from a factory decorated with ``base.rebuildable``
            (all of ours); BIPOP also one whose state holds ``sigma``.
        evaluate_mean: also evaluate ``f`` at the strategy's mean every generation (the
            ``mean_value`` metric, a candidate for the best) and at ``x0``; ``False``
            evaluates members only, as pycma does.
        bounds: ``(lower, upper)``, each a scalar, ``None`` or a pytree like ``x0``: no
            member is evaluated outside the box and the best point lies inside it.
        bound_handling: ``"transform"`` (pycma's ``BoundTransform``: the search runs in
            unbounded coordinates mapped into the box by ``bounds.into_box``) or
            ``"penalty"`` (``bounds.penalized``: ``f`` at the nearest point of the box
            plus the squared distance to it).

    Returns:
        An :class:`OptimizeResult`. ``metrics`` holds the strategy's metrics (fitness is
        ``-f`` for ``minimize``) plus ``best_value`` and, with ``evaluate_mean``,
        ``mean_value`` (``f`` at the strategy's mean), in the sign of ``f``.

    Example:
        >>> import jax.numpy as jnp
        >>> from es_toolkit import minimize
        >>> result = minimize(lambda x: jnp.sum(jnp.abs(x)), jnp.ones(5), progress=False)
        >>> bool(result.best_value < 0.05)
        True
    """
    return _optimize(
        f,
        x0,
        sign=-1.0,
        strategy=strategy,
        num_generations=num_generations,
        key=key,
        chunk_size=chunk_size,
        target=target,
        callback=callback,
        block_size=block_size,
        progress=progress,
        mesh=mesh,
        memory_budget=memory_budget,
        start=start,
        max_evaluations=max_evaluations,
        restarts=restarts,
        evaluate_mean=evaluate_mean,
        bounds=bounds,
        bound_handling=bound_handling,
    )


def _optimize(
    f,
    x0,
    *,
    sign,
    strategy=None,
    num_generations=1000,
    key=None,
    chunk_size=None,
    target=None,
    callback=None,
    block_size=50,
    progress=True,
    mesh=None,
    memory_budget=sampling_lib.DEFAULT_MEMORY_BUDGET,
    start=None,
    max_evaluations=None,
    restarts=None,
    evaluate_mean=True,
    bounds=None,
    bound_handling="transform",
) -> OptimizeResult:
    x0 = check_float_tree("x0", x0)
    mesh = None if mesh is None else parallel.make_mesh(mesh)
    num_generations = check_int("num_generations", num_generations, minimum=1)
    block_size = min(check_int("block_size", block_size, minimum=1), num_generations)
    chunk_size = check_optional_int("chunk_size", chunk_size, minimum=1)
    memory_budget = check_optional_int("memory_budget", memory_budget, minimum=1)
    max_evaluations = check_optional_int("max_evaluations", max_evaluations, minimum=1)
    restarts = restarts_lib.check_restarts(restarts)
    check_bool("evaluate_mean", evaluate_mean)
    if bound_handling not in BOUND_HANDLINGS:
        raise ValueError(
            f"bound_handling must be one of {', '.join(BOUND_HANDLINGS)}, got {bound_handling!r}."
        )
    box = None if bounds is None else bounds_lib.make_bounds(bounds, x0)
    strategy = open_es(64, sigma=0.1) if strategy is None else strategy
    if not isinstance(strategy, base.EvolutionStrategy):
        raise TypeError(f"strategy must be an EvolutionStrategy, got {type(strategy).__name__}.")
    _check_restartable(restarts, strategy, x0)
    key = jax.random.key(0) if key is None else key
    fitness_dtype = _fitness_dtype(f, x0)
    target_fitness = jnp.asarray(jnp.inf if target is None else sign * target, fitness_dtype)
    search_x0 = x0 if box is None or bound_handling == "penalty" else bounds_lib.from_box(box, x0)
    static = {
        "f": f,
        "sign": sign,
        "block_size": block_size,
        "mesh": mesh,
        "evaluate_mean": evaluate_mean,
        "bound_handling": None if box is None else bound_handling,
    }
    resumed = start is not None
    if not resumed:
        start = _first_checkpoint(strategy, search_x0, fitness_dtype, static, box)
    run = start.run
    current = _strategy_of_run(strategy, run)
    carry = _Carry(*start[:5], stop=jnp.zeros((), jnp.int32))
    blocks: list[dict[str, np.ndarray]] = []
    bar = Progress(num_generations, "generation", enabled=progress)

    def limits_of(run, carry, current):
        limit, reason = _generation_limit(
            run, carry, num_generations, max_evaluations, current, evaluate_mean
        )
        return _Limits(
            restarts_lib.run_key(key, int(run.index)),
            run.first_generation,
            jnp.asarray(limit, jnp.int32),
            jnp.asarray(reason, jnp.int32),
            target_fitness,
            box,
        )

    if resumed and current.stop is not None:
        # A checkpoint taken as a run stopped on its own criteria restarts right away.
        carry = carry._replace(stop=jnp.asarray(current.stop(carry.state), jnp.int32))
    while True:
        block = None
        if not int(carry.stop):
            limits = limits_of(run, carry, current)
            stop = _stop_before_block(carry, limits)
            if stop:
                carry = carry._replace(stop=jnp.asarray(stop, jnp.int32))
                break
            carry, block = _run_block(current, chunk_size, memory_budget, static, carry, limits, x0)
            blocks.append(block)
            mean = {"mean": float(block["mean_value"][-1])} if evaluate_mean else {}
            bar.update(int(carry.generation), best=float(sign * carry.best_fitness), **mean)
        stop = int(carry.stop)
        if stop in _RESTARTABLE and restarts is not None:
            restarted = _restart(restarts, strategy, run, carry, search_x0, key, limits_of)
            if isinstance(restarted, tuple):
                run, current, carry = restarted
                stop = 0
            elif restarted:  # a limit leaves no room for the next run: it is the reason
                stop = restarted
                carry = carry._replace(stop=jnp.asarray(stop, jnp.int32))
        if (
            block is not None
            and callback is not None
            and callback(
                {
                    "generation": int(carry.generation),
                    "metrics": block,
                    "best_value": float(sign * carry.best_fitness),
                    "state": carry.state,
                    "checkpoint": OptimizeState(*carry[:5], run=run),
                }
            )
        ):
            carry = carry._replace(stop=jnp.asarray(termination.code("callback"), jnp.int32))
            break
        if stop:
            break
    bar.close()
    names = blocks[0] if blocks else {}
    metrics = {name: np.concatenate([b[name] for b in blocks]) for name in names}
    best_params = carry.best_params
    if box is not None:
        to_box = bounds_lib.into_box if bound_handling == "transform" else bounds_lib.project
        best_params = to_box(box, best_params)
    return OptimizeResult(
        best_params=best_params,
        best_value=float(sign * carry.best_fitness),
        state=carry.state,
        metrics=metrics,
        num_generations=int(carry.generation),
        reached_target=bool(carry.best_fitness >= target_fitness),
        num_evaluations=int(carry.num_evaluations),
        num_restarts=int(run.index),
        stop_reason=termination.STOP_REASONS[int(carry.stop)],
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


def _fitness_dtype(f, x0) -> Any:
    """float64 when ``f`` returns float64 (under x64), float32 otherwise."""
    try:
        out = jax.eval_shape(f, x0)
    except TRACING_ERRORS:
        check_traceable("f", f, x0)  # raises a clear error when f is the cause
        raise
    shape = getattr(out, "shape", None)
    if shape != ():
        got = f"an array of shape {shape}" if shape is not None else type(out).__name__
        raise TypeError(f"f must return a scalar, got {got}.")
    return jnp.float64 if out.dtype == jnp.float64 else jnp.float32


def _check_restartable(restarts, strategy, x0) -> None:
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


def _objective(f, sign, bound_handling, box):
    """The fitness the strategy sees: ``sign * f``, through the bounds when there are any."""
    if bound_handling == "transform":
        return lambda params: sign * f(bounds_lib.into_box(box, params))
    if bound_handling == "penalty":
        penalized = bounds_lib.penalized(f, box)
        return lambda params: sign * penalized(params)
    return lambda params: sign * f(params)


def _first_checkpoint(strategy, x0, fitness_dtype, static, box) -> OptimizeState:
    """The start of a run: with ``evaluate_mean``, ``x0`` evaluated as the first best."""
    template = resume_template(strategy, x0, fitness_dtype)
    if not static["evaluate_mean"]:
        return template._replace(best_fitness=jnp.asarray(-jnp.inf, fitness_dtype))
    value = _objective(static["f"], static["sign"], static["bound_handling"], box)(x0)
    value = jnp.asarray(value, fitness_dtype)
    return template._replace(
        best_fitness=jnp.where(jnp.isnan(value), -jnp.inf, value),
        num_evaluations=jnp.ones((), jnp.int32),
    )


def _strategy_of_run(strategy, run):
    size = int(run.population_size)
    return strategy if size == strategy.population_size else strategy.rebuild(population_size=size)


def _generation_limit(run, carry, num_generations, max_evaluations, current, evaluate_mean):
    """``(generation, stop code)`` at which the current run stops at the latest: the first
    of ``num_generations``, the evaluation budget and the run's own cap."""
    candidates = [(num_generations, "num_generations")]
    if max_evaluations is not None:
        per_generation = current.population_size + int(evaluate_mean)
        left = max_evaluations - int(carry.num_evaluations)
        candidates.append((int(carry.generation) + left // per_generation, "max_evaluations"))
    if int(run.generation_limit) != restarts_lib.NO_LIMIT:
        candidates.append((int(run.generation_limit), "maxiter"))
    limit, reason = min(candidates, key=lambda candidate: candidate[0])
    return limit, termination.code(reason)


def _stop_before_block(carry, limits) -> int:
    if bool(carry.best_fitness >= limits.target):
        return termination.code("target")
    if int(carry.generation) >= int(limits.generation):
        return int(limits.reason)
    return 0


def _restart(restarts, strategy, run, carry, x0, key, limits_of):
    """``(run, strategy, carry)`` of the next run of the schedule; ``None`` when the
    schedule is spent, or the stop code of the limit that leaves no generation for it."""
    evaluations = int(carry.num_evaluations) - int(run.first_evaluations)
    plan, next_run = restarts_lib.plan_next(
        restarts, run, strategy.population_size, evaluations, key
    )
    if plan is None:
        return None
    current = strategy.rebuild(population_size=plan.population_size)
    state = current.init(x0)
    if plan.sigma_factor != 1.0:
        sigma = jax.tree.map(lambda s: (s * plan.sigma_factor).astype(s.dtype), state.sigma)
        state = state._replace(sigma=sigma)
    generation = int(carry.generation)
    cap = plan.max_generations
    next_run = next_run._replace(
        first_generation=jnp.asarray(generation, jnp.int32),
        generation_limit=jnp.asarray(
            restarts_lib.NO_LIMIT if cap is None else generation + cap, jnp.int32
        ),
        first_evaluations=carry.num_evaluations,
    )
    carry = carry._replace(state=state, stop=jnp.zeros((), jnp.int32))
    return _stop_before_block(carry, limits_of(next_run, carry, current)) or (
        next_run,
        current,
        carry,
    )


def _run_block(strategy, chunk_size, memory_budget, static, carry, limits, x0):
    """One jitted block of the current run: the new carry and the block's metrics (cut to
    the generations run)."""
    # Resolved per run (a bad chunk_size fails before tracing), the whole population
    # spelled as its size, so the jitted block sees one static number.
    size = base.evaluation_chunk_size(strategy, x0, chunk_size, memory_budget)
    size = strategy.population_size if size is None else size
    run_block = _block_runner(strategy=strategy, chunk_size=size, **static)
    first = int(carry.generation)
    try:
        carry, metrics = run_block(carry, limits)
    except TRACING_ERRORS:
        check_traceable("f", static["f"], x0)  # raises a clear error when f is the cause
        raise
    done = int(carry.generation) - first
    return carry, {name: np.asarray(value)[:done] for name, value in metrics.items()}


def _block_runner(**static):
    """The jitted block for these static settings: cached when they are hashable (``f``
    and the strategy's functions count by identity), else compiled for this call only."""
    try:
        hash(tuple(static.values()))
    except TypeError:
        return jax.jit(functools.partial(_block, **static))
    return functools.partial(_cached_block, **static)


_STATIC = ("f", "strategy", "sign", "chunk_size", "block_size", "mesh", "evaluate_mean")


def _block(
    carry,
    limits,
    *,
    f,
    strategy,
    sign,
    chunk_size,
    block_size,
    mesh,
    evaluate_mean,
    bound_handling,
):
    """``block_size`` generations from ``carry`` in a ``lax.scan``; generations after the
    run stops (a limit, the target or the strategy's own criteria) are skipped. With a
    ``mesh``, the population of every generation is sharded over its devices."""
    objective = _objective(f, sign, bound_handling, limits.box)
    per_generation = strategy.population_size + int(evaluate_mean)

    def generation(carry: _Carry) -> tuple[_Carry, dict[str, jax.Array]]:
        gen_key = jax.random.fold_in(limits.key, carry.generation - limits.first_generation)
        state, metrics, fitness = base.evaluate_and_tell(
            strategy, gen_key, carry.state, objective, chunk_size
        )
        mean_fitness = objective(carry.state.mean) if evaluate_mean else None
        best_params, best_fitness = _best_so_far(strategy, gen_key, carry, fitness, mean_fitness)
        metrics = {**metrics, "best_value": sign * best_fitness}
        if evaluate_mean:
            metrics["mean_value"] = sign * mean_fitness
        done = carry.generation + 1
        stop = _stop_code(strategy, state, best_fitness, done, limits)
        evaluations = carry.num_evaluations + per_generation
        return _Carry(state, best_params, best_fitness, done, evaluations, stop), metrics

    def step(carry: _Carry, _):
        with population_shard.whole():  # shapes only: they do not depend on sharding
            skipped = jax.eval_shape(generation, carry)[1]
        return jax.lax.cond(
            carry.stop != 0,
            lambda c: (c, jax.tree.map(_placeholder, skipped)),
            generation,
            carry,
        )

    def run(carry):
        return jax.lax.scan(step, carry, length=block_size)

    return parallel.shard(run, mesh)(carry)


_cached_block = jax.jit(_block, static_argnames=(*_STATIC, "bound_handling"))


def _stop_code(strategy, state, best_fitness, done, limits) -> jax.Array:
    """Why the run stops after this generation (0: it goes on): the target first, then the
    strategy's own criteria, then the generation limit."""
    code = jnp.where(done >= limits.generation, limits.reason, 0).astype(jnp.int32)
    if strategy.stop is not None:
        own = jnp.asarray(strategy.stop(state), jnp.int32)
        code = jnp.where(own != 0, own, code)
    return jnp.where(best_fitness >= limits.target, termination.code("target"), code)


def _placeholder(shape: jax.ShapeDtypeStruct) -> jax.Array:
    """A metric for a skipped generation (cut off before it reaches the caller)."""
    fill = jnp.nan if jnp.issubdtype(shape.dtype, jnp.inexact) else 0
    return jnp.full(shape.shape, fill, shape.dtype)


def _best_so_far(strategy, gen_key, carry, fitness, mean_fitness):
    """The best point seen so far: the previous best, this generation's best member, or
    the mean (when evaluated). The best member is regenerated from its key (a pair, for
    antithetic strategies), never stored with the population."""
    n = strategy.population_size
    dtype = carry.best_fitness.dtype
    index = jnp.argmax(jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf))
    start = jnp.minimum(index - index % 2, n - 2)
    pair = strategy.ask(gen_key, carry.state, start, 2)
    member = jax.tree.map(lambda leaf: leaf[index - start], pair)
    candidates = [(member, fitness[index])]
    if mean_fitness is not None:
        candidates.append((carry.state.mean, mean_fitness))
    best_params, best_fitness = carry.best_params, carry.best_fitness
    for params, value in candidates:
        value = jnp.where(jnp.isfinite(value), value, -jnp.inf).astype(dtype)
        best_params = _where(value > best_fitness, params, best_params)
        best_fitness = jnp.maximum(value, best_fitness)
    return best_params, best_fitness


def _where(condition: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)
