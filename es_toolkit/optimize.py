"""Black-box optimization loops: ``maximize`` and ``minimize`` with any strategy.

The sign lives in the function name. Inside, every strategy maximizes fitness; ``minimize``
hands it ``-f`` and reports values of ``f``. Generations run jitted, ``block_size`` at a
time in a ``lax.scan``; between blocks the loop reports progress, calls the callback and
checks for early stopping. The jitted block is cached: a second call with the same ``f``,
``strategy``, ``chunk_size``, ``block_size`` and shapes does not compile again; per-run values
(keys, limits, the target, bounds) are its arguments, so restarts compile once per
population size.

With ``jit=False`` the objective is any Python callable, evaluated from Python (in this
process, on worker processes or on an executor such as a Dask cluster) between the compiled
ask and tell of ``ask_tell.Optimizer``; see ``optimize_python``.

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

from es_toolkit import _search as search
from es_toolkit import bounds as bounds_lib
from es_toolkit import parallel, population_shard
from es_toolkit import restarts as restarts_lib
from es_toolkit import sampling as sampling_lib
from es_toolkit._search import (
    BOUND_HANDLINGS,
    OptimizeResult,
    OptimizeState,
    check_strategy,
    resume_template,
)
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
from es_toolkit.types import PRNGKey, PyTree

__all__ = [
    "BOUND_HANDLINGS",
    "OptimizeResult",
    "OptimizeState",
    "maximize",
    "minimize",
    "resume_template",
]


class _Carry(NamedTuple):
    state: Any
    best_params: PyTree
    best_fitness: jax.Array
    generation: jax.Array
    num_evaluations: jax.Array
    stop: jax.Array  # int32 code into termination.STOP_REASONS, 0 while running


def maximize(f: Callable[[PyTree], Any], x0: PyTree, **options: Any) -> OptimizeResult:
    """Maximizes ``f`` from ``x0`` with an evolution strategy. See :func:`minimize`."""
    return _optimize(f, x0, sign=1.0, **options)


def minimize(
    f: Callable[[PyTree], Any],
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
    jit: bool = True,
    vectorized: bool = False,
    executor: Any = None,
    workers: int | None = None,
    timeout: float | None = None,
    on_error: str = "raise",
    max_retries: int = 3,
) -> OptimizeResult:
    """Minimizes ``f`` from ``x0`` with an evolution strategy.

    Args:
        f: a JAX-traceable function from a pytree of float arrays to a scalar (written
            with ``jax.numpy``; ``jnp.where`` or ``lax.cond`` instead of a Python ``if``);
            it need not be differentiable or even continuous. With ``jit=False``, any
            Python callable from NumPy arrays (a pytree like ``x0``) to a float.
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
        callback: called after every block (every generation with ``jit=False``) with a
            dict (``generation``, ``metrics`` of the block as NumPy arrays, ``best_value``,
            ``state``, and ``checkpoint``, an :class:`OptimizeState`); returning ``True``
            stops.
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
        max_evaluations: a budget of evaluations of ``f`` (members, plus the mean with
            ``evaluate_mean``), over all runs; a generation that would pass it does not
            start.
        restarts: ``"ipop"``, ``"bipop"`` or a :class:`~es_toolkit.restarts.Restarts`:
            when the strategy stops on its own criteria (``strategy.stop``), start again
            from ``x0`` with a population size (and, for BIPOP, an initial sigma) from the
            schedule, until ``max_restarts``, the budget, ``num_generations`` or the
            target. Needs a strategy from a factory decorated with ``base.rebuildable``
            (all of ours); BIPOP also one whose state holds ``sigma``.
        evaluate_mean: also evaluate ``f`` at the strategy's mean every generation (the
            ``mean_value`` metric, a candidate for the best; the first mean is ``x0``);
            ``False`` evaluates members only, as pycma does.
        bounds: ``(lower, upper)``, each a scalar, ``None`` or a pytree like ``x0``: no
            member is evaluated outside the box and the best point lies inside it.
        bound_handling: ``"transform"`` (pycma's ``BoundTransform``: the search runs in
            unbounded coordinates mapped into the box by ``bounds.into_box``) or
            ``"penalty"`` (``bounds.penalized``: ``f`` at the nearest point of the box
            plus the squared distance to it).
        jit: ``True``: ``f`` is traced and whole blocks of generations run compiled.
            ``False``: ``f`` is a plain Python callable (NumPy, a simulator, a subprocess)
            called once per member from Python, serially or on ``workers`` or an
            ``executor``; the strategy's ask and tell still run compiled. The options below
            apply to it only; ``mesh`` and ``chunk_size`` to the compiled path only.
        vectorized: with ``jit=False``, ``f`` takes the whole batch (every leaf of ``x0``
            stacked on a new first axis, ``(population, d)`` for a vector) and returns one
            value per member; with workers, each gets a contiguous part of the batch.
        executor: with ``jit=False``, evaluate members on any
            ``concurrent.futures.Executor``: a ``ProcessPoolExecutor``, a Dask client's
            ``client.get_executor()``, mpi4py's ``MPIPoolExecutor``. Only the function and
            the members are sent; results come back in member order.
        workers: with ``jit=False``, evaluate on this many local worker processes (started
            with ``spawn``, never forked from this process; a dead one is replaced).
        timeout: with ``jit=False``, seconds an evaluation may take; past it, the member
            fails (``on_error``) and, on ``workers``, its process is killed.
        on_error: with ``jit=False``, what a failed evaluation (the objective raised,
            returned a non-number or timed out) does: ``"raise"`` stops with an
            :class:`~es_toolkit.evaluators.EvaluationError` naming the member, its ``x``
            and the objective's traceback (the callback's last checkpoint is that of the
            last complete generation); ``"worst"`` ranks the member last and counts it in
            the ``failures`` metric.
        max_retries: with ``jit=False``, how often a member whose worker process died is
            sent again before :class:`~es_toolkit.evaluators.WorkerLostError`.

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
    options = {name: value for name, value in locals().items() if name not in ("f", "x0")}
    return _optimize(f, x0, sign=-1.0, **options)


def _optimize(f, x0, *, sign, jit=True, **options) -> OptimizeResult:
    """Checks the options every path shares, then runs the compiled or the Python path."""
    if check_bool("jit", jit):
        python_only = {name: options.pop(name, default) for name, default in _PYTHON_ONLY.items()}
        given = [name for name, value in python_only.items() if value != _PYTHON_ONLY[name]]
        if given:
            raise ValueError(
                f"{', '.join(given)} apply to plain Python objectives: pass jit=False to call "
                "f from Python (it is then not traced)."
            )
        return _optimize_compiled(f, x0, sign=sign, **options)
    for name in ("mesh", "chunk_size"):
        if options.pop(name, None) is not None:
            raise ValueError(f"{name} applies to compiled objectives (jit=True) only.")
    for name in ("block_size", "memory_budget"):
        options.pop(name, None)
    # Imported here: the worker pools it brings are not needed by compiled objectives.
    from es_toolkit.optimize_python import optimize_python

    return optimize_python(f, x0, sign=sign, **options)


_PYTHON_HINT = (
    "For a plain Python objective (NumPy, a simulator, a subprocess), pass jit=False: f is "
    "then called from Python, once per member."
)
# The Python path's options, with their defaults.
_PYTHON_ONLY = {
    "vectorized": False,
    "executor": None,
    "workers": None,
    "timeout": None,
    "on_error": "raise",
    "max_retries": 3,
}


def _optimize_compiled(
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
    search.check_bound_handling(bound_handling)
    box = None if bounds is None else bounds_lib.make_bounds(bounds, x0)
    strategy = check_strategy(strategy)
    search.check_restartable(restarts, strategy, x0)
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
    start = start if resumed else search.first_state(strategy, search_x0, fitness_dtype)
    run = start.run
    current = search.strategy_of_run(strategy, run)
    carry = _Carry(*start[:5], stop=jnp.zeros((), jnp.int32))
    blocks: list[dict[str, np.ndarray]] = []
    bar = Progress(num_generations, "generation", enabled=progress)
    limits_of = functools.partial(
        search.make_limits,
        key,
        num_generations=num_generations,
        max_evaluations=max_evaluations,
        evaluate_mean=evaluate_mean,
        target=target_fitness,
        box=box,
    )
    if resumed and current.stop is not None:
        # A checkpoint taken as a run stopped on its own criteria restarts right away.
        carry = carry._replace(stop=jnp.asarray(current.stop(carry.state), jnp.int32))
    while True:
        block = None
        if not int(carry.stop):
            limits = limits_of(run, carry, current)
            stop = search.stop_before(carry, limits)
            if stop:
                carry = carry._replace(stop=jnp.asarray(stop, jnp.int32))
                break
            carry, block = _run_block(current, chunk_size, memory_budget, static, carry, limits, x0)
            blocks.append(block)
            mean = {"mean": float(block["mean_value"][-1])} if evaluate_mean else {}
            bar.update(int(carry.generation), best=float(sign * carry.best_fitness), **mean)
        run, current, carry, stop = search.restart_or_stop(
            restarts, strategy, run, current, carry, int(carry.stop), search_x0, key, limits_of
        )
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
    found = OptimizeState(*carry[:5], run=run)
    return search.result(found, carry.stop, metrics, sign, target_fitness, box, bound_handling)


def _fitness_dtype(f, x0) -> Any:
    """float64 when ``f`` returns float64 (under x64), float32 otherwise."""
    try:
        out = jax.eval_shape(f, x0)
    except TRACING_ERRORS:
        check_traceable("f", f, x0, hint=_PYTHON_HINT)  # raises when f is the cause
        raise
    shape = getattr(out, "shape", None)
    if shape != ():
        got = f"an array of shape {shape}" if shape is not None else type(out).__name__
        raise TypeError(f"f must return a scalar, got {got}.")
    return jnp.float64 if out.dtype == jnp.float64 else jnp.float32


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
        check_traceable("f", static["f"], x0, hint=_PYTHON_HINT)  # raises when f is the cause
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
    objective = search.fitness_function(f, sign, bound_handling, limits.box)
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
        stop = search.stop_code(strategy, state, best_fitness, done, limits)
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


def _placeholder(shape: jax.ShapeDtypeStruct) -> jax.Array:
    """A metric for a skipped generation (cut off before it reaches the caller)."""
    fill = jnp.nan if jnp.issubdtype(shape.dtype, jnp.inexact) else 0
    return jnp.full(shape.shape, fill, shape.dtype)


def _best_so_far(strategy, gen_key, carry, fitness, mean_fitness):
    """The best point seen so far: the previous best, this generation's best member, or
    the mean (when evaluated). The best member is regenerated from its key (a pair, for
    antithetic strategies), never stored with the population."""
    n = strategy.population_size
    index = jnp.argmax(jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf))
    start = jnp.minimum(index - index % 2, n - 2)
    pair = strategy.ask(gen_key, carry.state, start, 2)
    member = jax.tree.map(lambda leaf: leaf[index - start], pair)
    candidates = [(member, fitness[index])]
    if mean_fitness is not None:
        candidates.append((carry.state.mean, mean_fitness))
    return search.best_of(candidates, carry.best_params, carry.best_fitness)
