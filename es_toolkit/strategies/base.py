"""The strategy contract and the pieces every strategy shares.

An ``EvolutionStrategy`` is a NamedTuple of pure functions, optax style: hyperparameters
are captured when it is built, states are NamedTuples of arrays holding no key, and fitness
is higher-is-better.

* ``init(params) -> state``
* ``ask(key, state, start=0, count=None) -> members``: members ``start .. start+count-1``
  (all by default) as a pytree shaped like ``params`` with a leading population axis.
  Asking for a slice lets callers evaluate a huge population chunk by chunk.
* ``tell(key, state, fitness) -> (state, metrics)``: ``key`` is the one given to ``ask``;
  the noise is regenerated from it, so the population is never passed back or stored.

Strategies built with :func:`make_strategy` (all of ours) also say how their members are
drawn: ``sampling`` draws the noise ``z`` and ``transform(state, z)`` maps it linearly to the
members' offsets from the mean (``sigma * z`` elementwise for OpenES, PGPE, SNES and ARS,
``sigma * B D z`` for CMA-ES). Their ``tell`` accepts ``directions=``, the noise already
drawn for the whole population. :func:`evaluate_and_tell` uses both: when the whole
population is held at once it draws the noise once, for the members and the update,
instead of drawing it in ``ask`` and again in ``tell``; the result is the same.

A strategy may also say when it has converged (``stop(state)``: an index into
``termination.STOP_REASONS``, 0 to go on), and factories decorated with
:func:`rebuildable` give their strategies ``rebuild(**changes)``, the same strategy built
again with some arguments changed (restarts use it for a new population size).
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree

from es_toolkit import population_shard
from es_toolkit import sampling as sampling_lib
from es_toolkit._validate import check_float_tree, check_positive_scalar
from es_toolkit.noise import Normal
from es_toolkit.types import PRNGKey, PyTree


class EvolutionStrategy(NamedTuple):
    """A strategy: ``init``, ``ask``, ``tell`` and its population size.

    The other fields are optional. With ``sampling`` and ``transform`` (see
    :func:`make_strategy`) the members are ``state.mean + transform(state, z)`` for the
    noise ``z`` that ``sampling`` draws, and ``tell`` accepts ``directions=``; ``scale`` is
    set when that map is elementwise (``transform(state, z) = scale(state) * z``).
    """

    init: Callable[[PyTree], Any]
    ask: Callable[..., PyTree]
    tell: Callable[..., tuple[Any, dict[str, jax.Array]]]
    population_size: int
    sampling: sampling_lib.Sampling | None = None
    scale: Callable[[Any], Any] | None = None  # state -> scalar or pytree shaped like mean
    # (state, noise of some members, leading axis) -> their offsets from the mean
    transform: Callable[[Any, PyTree], PyTree] | None = None
    stop: Callable[[Any], jax.Array] | None = None  # state -> int32 reason, 0: go on
    rebuild: Callable[..., "EvolutionStrategy"] | None = None  # (**changed arguments)


Schedule = float | Callable[[jax.Array], jax.Array]
_MAX_BUILT = 512  # strategies a factory keeps for reuse


def perturbation_sampling(
    population_size: int, antithetic: bool, chunk_size: int | None
) -> sampling_lib.Sampling:
    """Gaussian perturbations of a strategy's population, with the shared checks; with no
    ``chunk_size``, chunked to ``sampling.DEFAULT_MEMORY_BUDGET`` bytes of noise."""
    return sampling_lib.make_sampling(
        population_size,
        Normal(),
        antithetic=antithetic,
        chunk_size=chunk_size,
        memory_budget=sampling_lib.DEFAULT_MEMORY_BUDGET,
    )


def check_schedule(name: str, value: Schedule) -> Callable[[jax.Array], jax.Array]:
    """A constant (checked positive) or an optax-style schedule of the generation count."""
    if callable(value):
        return value
    check_positive_scalar(name, value)
    return optax.constant_schedule(value)


def field_dtype(leaf: jax.Array):
    """The dtype of a state's fields shaped like ``leaf``: its own, at least float32."""
    return jnp.promote_types(leaf.dtype, jnp.float32)


def check_params(params: PyTree) -> PyTree:
    return check_float_tree("params", params)


def make_strategy(
    init: Callable[[PyTree], Any],
    tell: Callable[..., tuple[Any, dict[str, jax.Array]]],
    sampling: sampling_lib.Sampling,
    scale: Callable[[Any], Any] | None = None,
    *,
    transform: Callable[[Any, PyTree], PyTree] | None = None,
    stop: Callable[[Any], jax.Array] | None = None,
) -> EvolutionStrategy:
    """A strategy whose members are ``state.mean + transform(state, z)``, ``z`` drawn by
    ``sampling``; ``ask`` is built from them. Give ``scale`` for the elementwise map
    ``scale(state) * z`` or ``transform`` for any map linear in ``z``.
    ``tell(key, state, fitness, directions=None)`` must use ``directions`` (see
    :func:`sampling.weighted_sums`) when given."""
    if (scale is None) == (transform is None):
        raise TypeError("make_strategy takes exactly one of scale and transform.")
    if transform is None:
        transform = functools.partial(scaled_noise, scale)

    def ask(key: PRNGKey, state: Any, start: Any = 0, count: int | None = None) -> PyTree:
        offsets = functools.partial(transform, state)
        return ask_members(sampling, key, state.mean, offsets, start, count)

    return EvolutionStrategy(
        init, ask, tell, sampling.population_size, sampling, scale, transform, stop
    )


def scaled_noise(scale: Callable[[Any], Any], state: Any, z: PyTree) -> PyTree:
    """``scale(state) * z`` for a scalar scale or one shaped like the mean."""
    s = scale(state)
    if jax.tree.structure(s) != jax.tree.structure(z):
        s = jax.tree.map(lambda _: s, z)
    return jax.tree.map(lambda si, zi: si * zi, s, z)


def rebuildable(factory: Callable[..., EvolutionStrategy]) -> Callable[..., EvolutionStrategy]:
    """Decorates a strategy factory so that its strategies carry ``rebuild(**changes)``:
    the factory called again with the same arguments but ``changes`` (for example
    ``rebuild(population_size=2 * es.population_size)``).

    Calls with the same hashable arguments return the same strategy object, so jitted code
    keyed on the strategy (``minimize``'s loop) compiles once per distinct setting, also
    across restarts and across calls.
    """
    signature = inspect.signature(factory)
    built: dict[tuple, EvolutionStrategy] = {}

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> EvolutionStrategy:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        memo = tuple(arguments.items())
        try:
            return built[memo]
        except TypeError:  # an unhashable argument: build anew
            memo = None
        except KeyError:
            pass
        strategy = factory(*args, **kwargs)

        def rebuild(**changes: Any) -> EvolutionStrategy:
            unknown = sorted(set(changes) - set(signature.parameters))
            if unknown:
                raise TypeError(f"{factory.__name__} has no argument {', '.join(unknown)}.")
            return build(**{**arguments, **changes})

        strategy = strategy._replace(rebuild=rebuild)
        if memo is not None and len(built) < _MAX_BUILT:
            built[memo] = strategy
        return strategy

    return build


def ask_members(
    sampling: sampling_lib.Sampling,
    key: PRNGKey,
    mean: PyTree,
    offsets: Callable[[PyTree], PyTree],
    start: Any = 0,
    count: int | None = None,
) -> PyTree:
    """Members ``mean + offsets(z_i)`` for ``i`` in ``start .. start + count - 1``, where
    ``offsets`` maps the noise of some members (leading axis) to their offsets."""
    per = sampling_lib.members_per_direction(sampling)
    count = sampling.population_size if count is None else count
    if isinstance(start, int) and (start < 0 or start + count > sampling.population_size):
        raise ValueError(
            f"members {start}..{start + count - 1} are outside the population of "
            f"{sampling.population_size}."
        )
    for name, value in (("count", count), ("start", start)):
        if isinstance(value, int) and value % per:  # a traced start is checked by its caller
            raise ValueError(
                f"with antithetic pairs, {name} must be even (whole pairs), got {value}."
            )
    z = sampling_lib.sample_directions(sampling, key, start // per, count // per, mean)
    return members_from_directions(sampling, mean, offsets, z)


def members_from_directions(
    sampling: sampling_lib.Sampling,
    mean: PyTree,
    offsets: Callable[[PyTree], PyTree],
    directions: PyTree,
) -> PyTree:
    """The members ``mean + offsets(z)`` of the given directions (mirrored when
    antithetic)."""
    z = sampling_lib.to_members(sampling, directions)
    return jax.tree.map(lambda m, o: m + o, mean, offsets(z))


def check_fitness(fitness: jax.Array, population_size: int) -> jax.Array:
    fitness = jnp.asarray(fitness)
    if fitness.shape != (population_size,):
        raise ValueError(
            f"fitness must have shape ({population_size},) (one value per member), "
            f"got {fitness.shape}."
        )
    if not jnp.issubdtype(fitness.dtype, jnp.floating):
        fitness = fitness.astype(jnp.float32)
    return fitness


def fitness_metrics(fitness: jax.Array) -> dict[str, jax.Array]:
    """Statistics of the finite fitness values and the count of non-finite ones."""
    finite = jnp.isfinite(fitness)
    count = jnp.maximum(jnp.sum(finite), 1)
    mean = jnp.sum(jnp.where(finite, fitness, 0.0)) / count
    var = jnp.sum(jnp.where(finite, (fitness - mean) ** 2, 0.0)) / count
    stats = {
        "fitness_mean": mean,
        "fitness_max": jnp.max(jnp.where(finite, fitness, -jnp.inf)),
        "fitness_min": jnp.min(jnp.where(finite, fitness, jnp.inf)),
        "fitness_std": jnp.sqrt(var),
    }
    # With no finite fitness at all, the statistics are undefined: NaN, not +-inf or 0.
    stats = {name: jnp.where(jnp.any(finite), value, jnp.nan) for name, value in stats.items()}
    return {**stats, "num_non_finite": jnp.sum(~finite)}


def sigma_metrics(sigma: PyTree) -> dict[str, jax.Array]:
    """Mean (as ``sigma``), min and max of a per-parameter sigma pytree."""
    leaves = jax.tree.leaves(sigma)
    total = sum(jnp.sum(leaf, dtype=jnp.float32) for leaf in leaves)
    return {
        "sigma": total / sampling_lib.flat_size(sigma),
        "sigma_min": jnp.min(jnp.stack([jnp.min(leaf) for leaf in leaves])),
        "sigma_max": jnp.max(jnp.stack([jnp.max(leaf) for leaf in leaves])),
    }


def ascent_step(
    optimizer: optax.GradientTransformation,
    opt_state: Any,
    mean: PyTree,
    grad: PyTree,
) -> tuple[PyTree, Any]:
    """One optimizer step that increases fitness (optax minimizes, so negate).

    The gradient is cast to each parameter's dtype first, so that the optimizer's state
    keeps the dtypes ``init`` gave it (float32 sums of bfloat16 noise would promote it).
    """
    grad = jax.tree.map(lambda g, m: (-g).astype(m.dtype), grad, mean)
    updates, opt_state = optimizer.update(grad, opt_state, mean)
    return optax.apply_updates(mean, updates), opt_state


def chunk_unit(strategy: EvolutionStrategy, like: PyTree) -> int:
    """Members a chunk keeps together: whole antithetic pairs and orthogonal blocks. A
    strategy that does not say how it draws gets whole pairs when its population is even."""
    sampling = strategy.sampling
    if sampling is None:
        return 2 if strategy.population_size % 2 == 0 else 1
    per = sampling_lib.members_per_direction(sampling)
    return per * sampling_lib.orthogonal_block(sampling, like)


def evaluation_chunk_size(
    strategy: EvolutionStrategy,
    like: PyTree,
    chunk_size: int | None,
    memory_budget: int | None = sampling_lib.DEFAULT_MEMORY_BUDGET,
) -> int | None:
    """Members evaluated at once: ``chunk_size`` (checked to keep whole pairs and blocks),
    else as many as fit ``memory_budget`` bytes of member noise; ``None`` for all of them."""
    unit = chunk_unit(strategy, like)
    if chunk_size is None:
        return sampling_lib.auto_chunk_size(strategy.population_size, like, memory_budget, unit)
    if strategy.sampling is not None and chunk_size % unit:
        multiple = "even" if unit == 2 else f"a multiple of {unit}"
        raise ValueError(
            f"chunk_size must be {multiple}: a chunk keeps the strategy's mirrored pairs "
            f"(and orthogonal blocks) whole; got {chunk_size}."
        )
    return chunk_size


def evaluate(
    strategy: EvolutionStrategy,
    key: PRNGKey,
    state: Any,
    fitness_fn: Callable[[PyTree], jax.Array],
    chunk_size: int | None = None,
    memory_budget: int | None = sampling_lib.DEFAULT_MEMORY_BUDGET,
) -> jax.Array:
    """Fitness of every member, ``chunk_size`` members at a time.

    Members are regenerated from ``key`` chunk by chunk with ``strategy.ask``, so memory is
    O(chunk_size * d) whatever the population size. With no ``chunk_size`` the chunk is
    what fits ``memory_budget`` bytes of member noise: the whole population for small
    problems, and always with no budget (``None``). ``chunk_size`` must keep antithetic
    pairs whole (even). Inside ``parallel.shard`` each device evaluates its own block of
    members and the fitness is gathered, so every device returns all of it.
    """
    chunk_size = evaluation_chunk_size(strategy, state.mean, chunk_size, memory_budget)
    start, n = own_members(strategy)
    if chunk_size is None or chunk_size >= n:
        whole = population_shard.current() is None
        members = strategy.ask(key, state) if whole else strategy.ask(key, state, start, n)
        return population_shard.all_gather(jax.vmap(fitness_fn)(members))
    num_full, rest = divmod(n, chunk_size)

    def chunk(index):
        members = strategy.ask(key, state, start + index * chunk_size, chunk_size)
        return jax.vmap(fitness_fn)(members)

    fitness = jax.lax.map(chunk, jnp.arange(num_full)).reshape(-1)
    if rest:
        tail = jax.vmap(fitness_fn)(strategy.ask(key, state, start + num_full * chunk_size, rest))
        fitness = jnp.concatenate([fitness, tail])
    return population_shard.all_gather(fitness)


def own_members(strategy: EvolutionStrategy) -> tuple[Any, int]:
    """``(start, count)`` of the members this device evaluates: all of them, or inside
    ``parallel.shard`` its block (whole antithetic pairs)."""
    if strategy.sampling is None:
        return population_shard.own_range(strategy.population_size, "members")
    per = sampling_lib.members_per_direction(strategy.sampling)
    first, count = sampling_lib.own_directions(strategy.sampling)
    return first * per, count * per


def draws_once(strategy: EvolutionStrategy, like: PyTree, chunk_size: int | None = None) -> bool:
    """Whether :func:`evaluate_and_tell` holds the whole population's noise at once: the
    strategy says how it draws (``sampling``), evaluation is not chunked and its update is
    one pass anyway."""
    sampling = strategy.sampling
    if sampling is None or strategy.transform is None:
        return False
    if chunk_size is not None and chunk_size < strategy.population_size:
        return False
    total = sampling_lib.num_directions(sampling)
    return sampling_lib.chunk_directions(sampling, like) >= total


def evaluate_and_tell(
    strategy: EvolutionStrategy,
    key: PRNGKey,
    state: Any,
    fitness_fn: Callable[[PyTree], jax.Array],
    chunk_size: int | None = None,
    memory_budget: int | None = sampling_lib.DEFAULT_MEMORY_BUDGET,
) -> tuple[Any, dict[str, jax.Array], jax.Array]:
    """One generation: ``(new state, metrics, fitness)``, as ``tell`` after :func:`evaluate`
    (``chunk_size`` and ``memory_budget`` as there).

    When the whole population is held at once (see :func:`draws_once`) the noise is drawn
    once, for the members and for ``tell(..., directions=...)``, instead of once in ``ask``
    and again in ``tell``: the same numbers (up to float rounding) at about half the noise
    cost. Otherwise members are evaluated a chunk at a time and ``tell`` regenerates the
    noise from ``key``, in O(chunk * d) memory.
    """
    chunk_size = evaluation_chunk_size(strategy, state.mean, chunk_size, memory_budget)
    if not draws_once(strategy, state.mean, chunk_size):
        fitness = evaluate(strategy, key, state, fitness_fn, chunk_size, memory_budget)
        new_state, metrics = strategy.tell(key, state, fitness)
        return new_state, metrics, fitness
    sampling = strategy.sampling
    first, count = sampling_lib.own_directions(sampling)
    directions = sampling_lib.sample_directions(sampling, key, first, count, state.mean)
    offsets = functools.partial(strategy.transform, state)
    members = members_from_directions(sampling, state.mean, offsets, directions)
    fitness = population_shard.all_gather(jax.vmap(fitness_fn)(members))
    new_state, metrics = strategy.tell(key, state, fitness, directions=directions)
    return new_state, metrics, fitness
