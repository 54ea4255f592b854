"""Ask/tell for Python callers: any strategy around an objective evaluated anywhere.

The caller asks for a population, evaluates it however it likes (a simulator, a subprocess,
a cluster) and tells the values back::

    opt = Optimizer(cma_es(8, sigma=0.5), np.zeros(4), key=jax.random.key(0))
    while not opt.stop():
        xs = opt.ask()
        opt.tell([f(x) for x in xs])
    opt.result.best_params

The compiled ``ask`` and ``tell`` are built once per strategy and population size; between
them the state lives on the object. Members are a pure function of the key and the state,
so an optimizer saved and loaded (``save``/``load``, no pickle) asks the same members and
ends with the same numbers as one never stopped. Budgets, the target, bounds and restarts
work as in :func:`es_toolkit.minimize`, whose ``jit=False`` path is a loop over this object.
"""

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import _search as search
from es_toolkit import bounds as bounds_lib
from es_toolkit import checkpoint as checkpoint_lib
from es_toolkit import restarts as restarts_lib
from es_toolkit._validate import check_bool, check_float_tree, check_optional_int
from es_toolkit.strategies import base, termination
from es_toolkit.types import PRNGKey, PyTree

_FORMAT = "es_toolkit.ask_tell/1"


class Optimizer:
    """A strategy's search, one ``ask``/``tell`` per generation, minimizing by default.

    Args:
        strategy: an :class:`~es_toolkit.strategies.EvolutionStrategy`;
            ``open_es(64, sigma=0.1)`` by default.
        x0: the starting point, a float array or a pytree of them.
        key: generation ``g`` of a run asks with ``jax.random.fold_in(key, g)``;
            ``jax.random.key(0)`` by default.
        maximize: maximize the told values instead of minimizing them.
        bounds: ``(lower, upper)`` as in :func:`es_toolkit.minimize`; every asked point lies
            in the box.
        bound_handling: ``"transform"`` or ``"penalty"``, as in :func:`es_toolkit.minimize`.
        num_generations: stop after this many generations (over all runs); ``None``: never.
        max_evaluations: a budget of told values; a generation that would pass it is not
            asked.
        target: stop once a told value is at most this (at least, with ``maximize``).
        restarts: ``"ipop"``, ``"bipop"`` or a :class:`~es_toolkit.restarts.Restarts`:
            when the strategy stops on its own criteria, ask the next run's population.
        evaluate_mean: also ask for the strategy's mean every generation (the last point),
            a candidate for the best and the ``mean_value`` metric.
        start: continue from an :class:`~es_toolkit.OptimizeState` (a checkpoint of
            :func:`es_toolkit.minimize` or :attr:`checkpoint`).
    """

    def __init__(
        self,
        strategy: base.EvolutionStrategy | None,
        x0: PyTree,
        *,
        key: PRNGKey | None = None,
        maximize: bool = False,
        bounds: Any = None,
        bound_handling: str = "transform",
        num_generations: int | None = None,
        max_evaluations: int | None = None,
        target: float | None = None,
        restarts: str | restarts_lib.Restarts | None = None,
        evaluate_mean: bool = False,
        start: search.OptimizeState | None = None,
    ):
        # NumPy's float64 becomes float32 unless x64 is on, as in the compiled path.
        x0 = jax.tree.map(jnp.asarray, check_float_tree("x0", x0))
        self._sign = 1.0 if check_bool("maximize", maximize) else -1.0
        self._evaluate_mean = check_bool("evaluate_mean", evaluate_mean)
        num_generations = check_optional_int("num_generations", num_generations, minimum=1)
        max_evaluations = check_optional_int("max_evaluations", max_evaluations, minimum=1)
        search.check_bound_handling(bound_handling)
        self._box = None if bounds is None else bounds_lib.make_bounds(bounds, x0)
        self._bound_handling = None if self._box is None else bound_handling
        strategy = search.check_strategy(strategy)
        self._restarts = restarts_lib.check_restarts(restarts)
        search.check_restartable(self._restarts, strategy, x0)
        self._strategy = strategy
        self._key = jax.random.key(0) if key is None else key
        self._fitness_dtype = _fitness_dtype(x0)
        self._x0 = x0
        self._search_x0 = x0 if bound_handling == "penalty" else self._to_search(x0)
        target = jnp.inf if target is None else self._sign * target
        self._limits_of = functools.partial(
            search.make_limits,
            self._key,
            num_generations=restarts_lib.NO_LIMIT if num_generations is None else num_generations,
            max_evaluations=max_evaluations,
            evaluate_mean=self._evaluate_mean,
            target=jnp.asarray(target, self._fitness_dtype),
            box=self._box,
        )
        self._metrics: list[dict[str, np.ndarray]] = []
        self._begin(start)

    # -- the loop ----------------------------------------------------------------------------

    def ask(self) -> np.ndarray | list[PyTree]:
        """The points to evaluate next: a ``(population, *x0.shape)`` NumPy array for an
        array ``x0``, else a list of pytrees like ``x0`` with NumPy leaves. The strategy's
        members come first, then (with ``evaluate_mean``) its mean. Asking again before
        ``tell`` returns the same points."""
        if self.stop():
            raise RuntimeError(
                f"the search has stopped ({self.stop_reason}): read .result, or raise its "
                "limits in a new Optimizer started from .checkpoint."
            )
        if self._asked is None:
            self._asked = _ask(
                self._current,
                self._limits,
                self._search.generation,
                self._search.state,
                bound_handling=self._bound_handling,
                evaluate_mean=self._evaluate_mean,
            )
        return _as_points(jax.tree.map(np.asarray, self._asked[1]), self._x0)

    def tell(self, values: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
        """Takes the objective's values of the asked points (in their order; NaN or an
        infinity for a failed one, which then ranks last) and moves to the next generation.
        Returns the generation's metrics (JAX scalars)."""
        if self._asked is None:
            raise RuntimeError("tell() takes the values of the points of ask(): call ask() first.")
        values = _check_values(values, self.num_points)
        members = self._asked[0]
        # A NumPy array of the right dtype goes to the jitted step without a conversion op.
        fitness = (self._sign * values).astype(self._fitness_dtype)
        self._search, metrics, stop, following = _tell(
            self._current,
            self._search,
            fitness,
            members,
            self._limits,
            sign=self._sign,
            bound_handling=self._bound_handling,
            evaluate_mean=self._evaluate_mean,
        )
        # The next generation's points come from the same compiled call (one dispatch a
        # generation); a stop, or the restart it leads to, discards them.
        self._asked = following
        self._metrics.append(metrics)  # on the device: copied once, by result
        stop = int(stop)
        if stop:  # the jitted step checked the limits: only a stop needs more work
            self._asked = None
            self._after_generation(stop)
        return metrics

    def stop(self) -> bool:
        """Whether the search has ended (see :attr:`stop_reason`)."""
        return self._stop != 0

    # -- what it knows -----------------------------------------------------------------------

    @property
    def stop_reason(self) -> str:
        """Why the search ended (a name from ``termination.STOP_REASONS``), "" while it runs."""
        return termination.STOP_REASONS[self._stop]

    @property
    def num_points(self) -> int:
        """How many points ``ask`` returns: the population, plus one with ``evaluate_mean``."""
        return self._current.population_size + int(self._evaluate_mean)

    @property
    def generation(self) -> int:
        return int(self._search.generation)

    @property
    def checkpoint(self) -> search.OptimizeState:
        """Where the search stands, as :func:`es_toolkit.minimize` checkpoints it."""
        return self._search

    @property
    def result(self) -> search.OptimizeResult:
        """The best point told so far (inside any bounds), its value, the evaluations and
        the metrics of the generations told to this object."""
        names = self._metrics[0] if self._metrics else {}
        stacked = {name: jnp.stack([m[name] for m in self._metrics]) for name in names}
        metrics = jax.device_get(stacked)
        return search.result(
            self._search,
            self._stop,
            metrics,
            self._sign,
            self._limits_of(self._search.run, self._search, self._current).target,
            self._box,
            self._bound_handling,
        )

    # -- saving ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Writes the search to ``path`` (a ``.npz`` checkpoint, atomically; no pickle)."""
        metadata = {
            "format": _FORMAT,
            "stop": self._stop,
            "run_population_size": self._current.population_size,
            "key": np.asarray(jax.random.key_data(self._key)).tolist(),
        }
        return checkpoint_lib.save_checkpoint(path, self._search, metadata)

    def load(self, path: str | Path) -> "Optimizer":
        """Continues the search saved in ``path`` by an optimizer built with the same
        strategy, ``x0``, key and options: the next ``ask`` is the one it would have made."""
        metadata = checkpoint_lib.read_metadata(path)
        if metadata.get("format") != _FORMAT:
            raise checkpoint_lib.CheckpointError(
                f"{path} is not an Optimizer checkpoint (format {metadata.get('format')!r})."
            )
        if metadata["key"] != np.asarray(jax.random.key_data(self._key)).tolist():
            raise ValueError(
                f"{path} was saved by a search with another key: build the Optimizer with "
                "the key of the saved search."
            )
        size = int(metadata["run_population_size"])
        current = self._strategy
        if size != current.population_size:
            current = current.rebuild(population_size=size)
        template = search.resume_template(current, self._search_x0, self._fitness_dtype)
        state, _ = checkpoint_lib.load_checkpoint(path, template)
        self._metrics = []
        self._begin(state, stop=int(metadata["stop"]))
        return self

    # -- internals ---------------------------------------------------------------------------

    def _to_search(self, x: PyTree) -> PyTree:
        return x if self._box is None else bounds_lib.from_box(self._box, x)

    def _begin(self, start: search.OptimizeState | None, stop: int | None = None) -> None:
        """Starts from ``start`` (a fresh search when None) whose stop code is ``stop`` when
        known (a loaded checkpoint), else found as the jitted loop finds it."""
        resumed = start is not None
        if not resumed:
            start = search.first_state(self._strategy, self._search_x0, self._fitness_dtype)
        self._search, self._run = start, start.run
        self._current = search.strategy_of_run(self._strategy, self._run)
        self._asked = None
        if stop is not None:
            self._stop = stop
            self._limits = self._limits_of(self._run, start, self._current)
            return
        stop = 0
        if resumed and self._current.stop is not None:
            # A checkpoint taken as a run stopped on its own criteria restarts right away.
            stop = int(self._current.stop(start.state))
        self._after_generation(stop)

    def _after_generation(self, stop: int) -> None:
        """The next run when ``stop`` calls for a restart; the stop when a limit leaves no
        generation to ask."""
        run, current, found, stop = search.restart_or_stop(
            self._restarts,
            self._strategy,
            self._run,
            self._current,
            self._search,
            stop,
            self._search_x0,
            self._key,
            self._limits_of,
        )
        self._run, self._current = run, current
        self._search = found._replace(run=run)
        self._limits = self._limits_of(run, self._search, current)
        self._stop = stop or search.stop_before(self._search, self._limits)


def _fitness_dtype(x0: PyTree) -> Any:
    """float64 for a float64 ``x0`` (under x64), float32 otherwise."""
    leaves = jax.tree.leaves(x0)
    return np.float64 if any(leaf.dtype == jnp.float64 for leaf in leaves) else np.float32


def _check_values(values: Any, count: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"values must be {count} real numbers (one per asked point), got {values!r:.200}."
        ) from None
    if array.shape != (count,):
        raise ValueError(
            f"values must hold {count} numbers, one per asked point, got shape {array.shape}."
        )
    return array


def _as_points(points: PyTree, x0: PyTree) -> np.ndarray | list[PyTree]:
    if isinstance(x0, jax.Array | np.ndarray):
        return points
    count = jax.tree.leaves(points)[0].shape[0]
    return [jax.tree.map(lambda leaf, i=i: leaf[i], points) for i in range(count)]


def _members_and_points(strategy, limits, generation, state, bound_handling, evaluate_mean):
    """The run's members of this generation (and the mean), and where to evaluate them."""
    key = jax.random.fold_in(limits.key, generation - limits.first_generation)
    members = strategy.ask(key, state)
    if evaluate_mean:
        members = jax.tree.map(lambda m, x: jnp.concatenate([m, x[None]]), members, state.mean)
    points = jax.vmap(functools.partial(search.evaluation_point, bound_handling, limits.box))
    return members, points(members)


@functools.partial(jax.jit, static_argnames=("strategy", "bound_handling", "evaluate_mean"))
def _ask(strategy, limits, generation, state, *, bound_handling, evaluate_mean):
    return _members_and_points(strategy, limits, generation, state, bound_handling, evaluate_mean)


@functools.partial(jax.jit, static_argnames=("strategy", "sign", "bound_handling", "evaluate_mean"))
def _tell(strategy, found, fitness, members, limits, *, sign, bound_handling, evaluate_mean):
    """One generation's update from the told fitness (``sign`` times the values), and the
    next generation's members and points."""
    n = strategy.population_size
    key = jax.random.fold_in(limits.key, found.generation - limits.first_generation)
    penalty = jax.vmap(functools.partial(search.penalty, bound_handling, limits.box))(members)
    fitness = fitness - penalty.astype(fitness.dtype)
    state, metrics = strategy.tell(key, found.state, fitness[:n])
    index = jnp.argmax(jnp.where(jnp.isfinite(fitness[:n]), fitness[:n], -jnp.inf))
    candidates = [(jax.tree.map(lambda m: m[index], members), fitness[index])]
    if evaluate_mean:
        candidates.append((jax.tree.map(lambda m: m[n], members), fitness[n]))
    best_params, best_fitness = search.best_of(candidates, found.best_params, found.best_fitness)
    metrics = {**metrics, "best_value": sign * best_fitness}
    if evaluate_mean:
        metrics["mean_value"] = sign * fitness[n]
    done = found.generation + 1
    stop = search.stop_code(strategy, state, best_fitness, done, limits)
    evaluations = found.num_evaluations + fitness.shape[0]
    found = found._replace(
        state=state,
        best_params=best_params,
        best_fitness=best_fitness,
        generation=done,
        num_evaluations=evaluations,
    )
    following = _members_and_points(strategy, limits, done, state, bound_handling, evaluate_mean)
    return found, metrics, stop, following
