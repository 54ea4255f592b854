"""Black-box optimization loops: ``maximize`` and ``minimize`` with any strategy.

The sign lives in the function name. Inside, every strategy maximizes fitness; ``minimize``
hands it ``-f`` and reports values of ``f``. Generations run jitted, ``block_size`` at a
time in a ``lax.scan``; between blocks the loop reports progress, calls the callback and
checks for early stopping. The jitted block is cached: a second call with the same ``f``,
``strategy``, ``chunk_size``, ``block_size`` and shapes does not compile again.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import parallel, population_shard
from es_toolkit import sampling as sampling_lib
from es_toolkit._validate import (
    TRACING_ERRORS,
    check_float_tree,
    check_int,
    check_optional_int,
    check_traceable,
)
from es_toolkit.progress import Progress
from es_toolkit.strategies import base
from es_toolkit.strategies.open_es import open_es
from es_toolkit.types import PRNGKey, PyTree


class OptimizeResult(NamedTuple):
    best_params: PyTree  # the best point evaluated (a member or a mean)
    best_value: float  # f(best_params), in the caller's sign
    state: Any  # the strategy's final state
    metrics: dict[str, np.ndarray]  # per generation, each of length num_generations
    num_generations: int  # generations run (fewer than asked when stopped early)
    reached_target: bool


class OptimizeState(NamedTuple):
    """Where an optimization stands between blocks (the callback's ``"checkpoint"``):
    ``minimize(..., start=it)`` continues with the numbers of a run never stopped."""

    state: Any  # the strategy's state
    best_params: PyTree  # the best point so far
    best_fitness: jax.Array  # float32 scalar, higher is better (-f for minimize)
    generation: jax.Array  # int32 scalar, generations done


class _Carry(NamedTuple):
    state: Any
    best_params: PyTree
    best_fitness: jax.Array
    generation: jax.Array
    done: jax.Array


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
) -> OptimizeResult:
    """Minimizes ``f`` from ``x0`` with an evolution strategy.

    Args:
        f: a JAX-traceable function from a pytree of float arrays to a scalar (written
            with ``jax.numpy``; ``jnp.where`` or ``lax.cond`` instead of a Python ``if``);
            it need not be differentiable or even continuous.
        x0: the starting point (the strategy's initial mean), a pytree of float arrays
            whose leaves may differ in dtype (float32, bfloat16, ...): each keeps its own.
        strategy: an :class:`~es_toolkit.strategies.EvolutionStrategy`;
            ``open_es(64, sigma=0.1)`` by default.
        num_generations: the most generations to run (counting those before ``start``).
        key: the run's key; generation ``g`` uses ``jax.random.fold_in(key, g)``.
            ``jax.random.key(0)`` by default.
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
            with the same ``f``, ``x0``, strategy and key; ``metrics`` then cover only the
            generations run in this call.

    Returns:
        An :class:`OptimizeResult`. ``metrics`` holds the strategy's metrics (fitness is
        ``-f`` for ``minimize``) plus ``best_value`` and ``mean_value`` (``f`` at the
        strategy's mean) in the sign of ``f``.

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
) -> OptimizeResult:
    x0 = check_float_tree("x0", x0)
    mesh = None if mesh is None else parallel.make_mesh(mesh)
    num_generations = check_int("num_generations", num_generations, minimum=1)
    block_size = min(check_int("block_size", block_size, minimum=1), num_generations)
    chunk_size = check_optional_int("chunk_size", chunk_size, minimum=1)
    memory_budget = check_optional_int("memory_budget", memory_budget, minimum=1)
    strategy = open_es(64, sigma=0.1) if strategy is None else strategy
    if not isinstance(strategy, base.EvolutionStrategy):
        raise TypeError(f"strategy must be an EvolutionStrategy, got {type(strategy).__name__}.")
    # Resolved once here (a bad chunk_size fails before tracing), the whole population
    # spelled as its size, so the jitted block sees one static number.
    chunk_size = base.evaluation_chunk_size(strategy, x0, chunk_size, memory_budget)
    chunk_size = strategy.population_size if chunk_size is None else chunk_size
    key = jax.random.key(0) if key is None else key
    target_fitness = jnp.inf if target is None else sign * float(target)

    def fitness_fn(params):
        return sign * f(params)

    run_block = _block_runner(f, strategy, sign, chunk_size, block_size, mesh)
    num_generations_array = jnp.asarray(num_generations, jnp.int32)
    target_array = jnp.asarray(target_fitness, jnp.float32)
    initial = strategy.init(x0)
    first_value = jnp.asarray(fitness_fn(x0))
    if first_value.shape != ():
        raise TypeError(f"f must return a scalar, got an array of shape {first_value.shape}.")
    if start is None:
        start = OptimizeState(
            initial, x0, first_value.astype(jnp.float32), jnp.zeros((), jnp.int32)
        )
    done = (start.generation >= num_generations) | (start.best_fitness >= target_fitness)
    carry = _Carry(*start, done=jnp.asarray(done))
    blocks: list[dict[str, np.ndarray]] = []
    bar = Progress(num_generations, "generation", enabled=progress)
    while not bool(carry.done):
        start = int(carry.generation)
        try:
            carry, block_metrics = run_block(carry, key, target_array, num_generations_array)
        except TRACING_ERRORS:
            check_traceable("f", f, x0)  # raises a clear error when f is the cause
            raise
        done_now = int(carry.generation)
        block = {
            name: np.asarray(value)[: done_now - start] for name, value in block_metrics.items()
        }
        blocks.append(block)
        best_value = float(sign * carry.best_fitness)
        bar.update(done_now, best=best_value, mean=float(block["mean_value"][-1]))
        stop = bool(carry.done)
        if callback is not None and callback(
            {
                "generation": done_now,
                "metrics": block,
                "best_value": best_value,
                "state": carry.state,
                "checkpoint": OptimizeState(*carry[:4]),
            }
        ):
            stop = True
        if stop:
            break
    bar.close()
    names = blocks[0] if blocks else {}
    metrics = {name: np.concatenate([b[name] for b in blocks]) for name in names}
    return OptimizeResult(
        best_params=carry.best_params,
        best_value=float(sign * carry.best_fitness),
        state=carry.state,
        metrics=metrics,
        num_generations=int(carry.generation),
        reached_target=bool(carry.best_fitness >= target_fitness),
    )


def _block_runner(f, strategy, sign, chunk_size, block_size, mesh):
    """The jitted block for these static settings: cached when they are hashable (``f``
    and the strategy's functions count by identity), else compiled for this call only."""
    static = {
        "f": f,
        "strategy": strategy,
        "sign": sign,
        "chunk_size": chunk_size,
        "block_size": block_size,
        "mesh": mesh,
    }
    try:
        hash(tuple(static.values()))
    except TypeError:
        return jax.jit(functools.partial(_block, **static))
    return functools.partial(_cached_block, **static)


def _block(
    carry, key, target_fitness, num_generations, *, f, strategy, sign, chunk_size, block_size, mesh
):
    """``block_size`` generations from ``carry`` in a ``lax.scan``; generations after the
    last (``num_generations``) or after reaching ``target_fitness`` are skipped. With a
    ``mesh``, the population of every generation is sharded over its devices."""

    def fitness_fn(params):
        return sign * f(params)

    def generation(carry: _Carry) -> tuple[_Carry, dict[str, jax.Array]]:
        gen_key = jax.random.fold_in(key, carry.generation)
        state, metrics, fitness = base.evaluate_and_tell(
            strategy, gen_key, carry.state, fitness_fn, chunk_size
        )
        mean_fitness = fitness_fn(carry.state.mean)
        best_params, best_fitness = _best_so_far(strategy, gen_key, carry, fitness, mean_fitness)
        metrics = {
            **metrics,
            "best_value": sign * best_fitness,
            "mean_value": sign * mean_fitness,
        }
        done = (best_fitness >= target_fitness) | (carry.generation + 1 >= num_generations)
        return _Carry(state, best_params, best_fitness, carry.generation + 1, done), metrics

    def step(carry: _Carry, _):
        with population_shard.whole():  # shapes only: they do not depend on sharding
            skipped = jax.eval_shape(generation, carry)[1]
        return jax.lax.cond(
            carry.done,
            lambda c: (c, jax.tree.map(_placeholder, skipped)),
            generation,
            carry,
        )

    def run(carry):
        return jax.lax.scan(step, carry, length=block_size)

    return parallel.shard(run, mesh)(carry)


_cached_block = jax.jit(
    _block, static_argnames=("f", "strategy", "sign", "chunk_size", "block_size", "mesh")
)


def _placeholder(shape: jax.ShapeDtypeStruct) -> jax.Array:
    """A metric for a skipped generation (cut off before it reaches the caller)."""
    fill = jnp.nan if jnp.issubdtype(shape.dtype, jnp.inexact) else 0
    return jnp.full(shape.shape, fill, shape.dtype)


def _best_so_far(strategy, gen_key, carry, fitness, mean_fitness):
    """The best point seen so far: the previous best, this generation's best member, or
    the mean. The best member is regenerated from its key (a pair, for antithetic
    strategies), never stored with the population."""
    n = strategy.population_size
    index = jnp.argmax(jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf))
    start = jnp.minimum(index - index % 2, n - 2)
    pair = strategy.ask(gen_key, carry.state, start, 2)
    member = jax.tree.map(lambda leaf: leaf[index - start], pair)
    member_fitness = jnp.where(jnp.isfinite(fitness[index]), fitness[index], -jnp.inf)
    best_params, best_fitness = carry.best_params, carry.best_fitness
    mean_fitness = jnp.where(jnp.isfinite(mean_fitness), mean_fitness, -jnp.inf)
    for params, value in ((member, member_fitness), (carry.state.mean, mean_fitness)):
        best_params = _where(value > best_fitness, params, best_params)
        best_fitness = jnp.maximum(value, best_fitness)
    return best_params, best_fitness


def _where(condition: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)
