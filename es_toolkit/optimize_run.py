"""An optimization of a test objective (``es_toolkit.objectives``) into a run folder, as
``train`` does for policies: a JSONL log per generation, a checkpoint after every block
(``--resume`` continues it exactly, restarts included), a PNG curve and ``result.json``.
"""

import dataclasses
import math
import numbers
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from es_toolkit import _run_config as run_config
from es_toolkit import objectives, parallel
from es_toolkit import restarts as restarts_lib
from es_toolkit import strategies as strategies_lib
from es_toolkit._run_config import ConfigError
from es_toolkit.optimize import BOUND_HANDLINGS, OptimizeResult, minimize, resume_template
from es_toolkit.report import metrics_rows
from es_toolkit.run_folder import RunClock, RunFolder

# Fields a resumed optimization may change: they do not alter the generations run (raising
# num_generations or max_evaluations extends the run).
RESUMABLE_FIELDS = ("num_generations", "max_evaluations", "devices")


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    objective: str = "rastrigin"
    dim: int = 10
    strategy: str = "open_es"
    population_size: int = 64
    num_generations: int = 1000
    seed: int = 0
    sigma: float | None = None  # None: 5% of the objective's domain width
    chunk_size: int | None = None  # None: as many members as the memory budget allows
    target: float | None = None  # stop once the best value is at most this
    devices: int | None = None  # shard the population over this many devices
    # (low, high) for every coordinate; None on a side: unbounded there. f is evaluated
    # only inside the box, and the start is drawn in it.
    bounds: tuple[float | None, float | None] | None = None
    bound_handling: str = "transform"  # or "penalty": see es_toolkit.bounds
    # Evaluations of the objective over all runs (members, and the mean every generation).
    max_evaluations: int | None = None
    # "ipop" or "bipop" (es_toolkit.restarts): when the strategy stops on its own
    # criteria, start again from the same point with a larger (or, BIPOP, smaller)
    # population, until the budgets or the target.
    restarts: str | None = None

    def __post_init__(self):
        run_config.require_choice("objective", self.objective, objectives.OBJECTIVES)
        run_config.require_choice("strategy", self.strategy, strategies_lib.STRATEGIES)
        for name, minimum in (("dim", 1), ("population_size", 2), ("num_generations", 1)):
            run_config.require_int(name, getattr(self, name), minimum)
        run_config.require_int("seed", self.seed, 0)
        run_config.require_int("chunk_size", self.chunk_size, 1, optional=True)
        run_config.require_int("devices", self.devices, 1, optional=True)
        run_config.require_positive("sigma", self.sigma, optional=True)
        run_config.require_finite("target", self.target, optional=True)
        object.__setattr__(self, "bounds", _check_bounds(self.bounds))
        run_config.require_choice("bound_handling", self.bound_handling, BOUND_HANDLINGS)
        run_config.require_int("max_evaluations", self.max_evaluations, 1, optional=True)
        if self.restarts is not None:
            run_config.require_choice("restarts", self.restarts, restarts_lib.KINDS)
        try:
            strategy = build_strategy(self)
        except (TypeError, ValueError) as error:
            field = run_config.field_named_in(str(error), OptimizeConfig)
            raise ConfigError(field, str(error)) from None
        if self.restarts == "bipop" and not _has_step_size(strategy, self.dim):
            raise ConfigError(
                "restarts",
                f"restarts='bipop' draws the initial step size of each small run, and "
                f"{self.strategy} keeps none in its state: use restarts='ipop'.",
            )

    def initial_sigma(self) -> float:
        low, high = objectives.get(self.objective).bounds
        return self.sigma if self.sigma is not None else 0.05 * (high - low)

    def default_out(self) -> Path:
        return Path("runs") / (
            f"optimize-{self.objective}-d{self.dim}-{self.strategy}-seed{self.seed}"
        )


def _has_step_size(strategy: strategies_lib.EvolutionStrategy, dim: int) -> bool:
    """Whether the strategy's state holds ``sigma`` (BIPOP scales it); shapes only."""
    state = jax.eval_shape(strategy.init, jax.ShapeDtypeStruct((dim,), jnp.float32))
    return hasattr(state, "sigma")


def _check_bounds(bounds: object) -> tuple[float | None, float | None] | None:
    """``bounds`` as a ``(low, high)`` tuple with an infinite side as None (JSON has no
    infinity), None when both sides are; raises a ConfigError naming ``bounds``."""
    if bounds is None:
        return None
    expected = "bounds must be (low, high): two floats, None or an infinity for no bound"
    if not (isinstance(bounds, tuple | list) and len(bounds) == 2):
        raise ConfigError("bounds", f"{expected}, got {bounds!r}.")
    for side in bounds:
        is_real = isinstance(side, numbers.Real) and not isinstance(side, bool)
        if side is not None and not (is_real and not math.isnan(side)):
            raise ConfigError("bounds", f"{expected}, got {bounds!r}.")
    low = -math.inf if bounds[0] is None else float(bounds[0])
    high = math.inf if bounds[1] is None else float(bounds[1])
    if not low < high:
        raise ConfigError("bounds", f"bounds must have low < high, got low {low} >= high {high}.")
    if math.isinf(low) and math.isinf(high):
        return None
    return (None if math.isinf(low) else low, None if math.isinf(high) else high)


def initial_point(config: OptimizeConfig, key: jax.Array) -> jax.Array:
    """The start: uniform on the objective's domain, mapped affinely onto the part of it
    inside ``config.bounds`` (onto the nearest bound when the box misses the domain)."""
    objective = objectives.get(config.objective)
    x0 = objective.init(key, config.dim)
    if config.bounds is None:
        return x0
    low, high = objective.bounds
    lo = -math.inf if config.bounds[0] is None else config.bounds[0]
    hi = math.inf if config.bounds[1] is None else config.bounds[1]
    start, stop = min(max(low, lo), hi), min(max(high, lo), hi)
    if (start, stop) == (low, high):
        return x0
    # The clip keeps rounding from stepping past the box.
    return jnp.clip(start + (stop - start) * (x0 - low) / (high - low), start, stop)


def build_strategy(config: OptimizeConfig) -> strategies_lib.EvolutionStrategy:
    factory = strategies_lib.get_strategy(config.strategy)
    options = {} if config.chunk_size is None else {"chunk_size": config.chunk_size}
    return factory(config.population_size, sigma=config.initial_sigma(), **options)


def read_optimization(out: str | Path) -> OptimizeConfig:
    """The config of the optimization saved in the run folder ``out``."""
    return OptimizeConfig(**RunFolder(out).read_metadata()["config"])


def run_optimization(
    config: OptimizeConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> OptimizeResult:
    """Minimizes ``config.objective`` from a random start, writing the run folder ``out``.

    With ``resume``, continues the run saved in ``out`` (``config`` may be ``None``, or
    change only ``RESUMABLE_FIELDS``: raising ``num_generations`` or ``max_evaluations``
    extends the run).
    """
    folder = RunFolder(out, writer=parallel.is_main_process())
    metadata = folder.read_metadata() if resume else {}
    if resume:
        saved = OptimizeConfig(**metadata["config"])
        config = run_config.resume_config(
            saved, config, str(out), RESUMABLE_FIELDS, metadata["generation"]
        )
        _check_budget_left(config, metadata, str(out))
    objective = objectives.get(config.objective)
    strategy = build_strategy(config)
    key = jax.random.key(config.seed)
    x0 = initial_point(config, jax.random.fold_in(key, 0))
    with folder.claim(resume=resume, overwrite=overwrite):
        start = None
        if resume:
            # After a restart the state has the shapes of that run's population.
            size = metadata.get("run_population_size", config.population_size)
            current = strategy.rebuild(population_size=size)
            start, _ = folder.load_checkpoint(resume_template(current, x0))
            folder.truncate_log(int(start.generation))
        clock = RunClock(metadata.get("wall_time_s", 0.0))

        def record(info: dict[str, Any]) -> None:
            first = info["generation"] - len(next(iter(info["metrics"].values())))
            rows = metrics_rows(info["metrics"], first)
            wall = clock.elapsed()
            folder.append_log([{**row, "wall_time": wall} for row in rows])
            checkpoint = info["checkpoint"]
            saved = {
                "config": dataclasses.asdict(config),
                "generation": info["generation"],
                "num_evaluations": int(checkpoint.num_evaluations),
                "run_population_size": int(checkpoint.run.population_size),
                "wall_time_s": wall,
            }
            folder.save_checkpoint(checkpoint, saved)

        mesh = config.devices or (jax.device_count() if jax.process_count() > 1 else None)
        result = minimize(
            objective.fn,
            x0,
            strategy=strategy,
            num_generations=config.num_generations,
            key=jax.random.fold_in(key, 1),
            chunk_size=config.chunk_size,
            target=config.target,
            callback=record,
            progress=progress and parallel.is_main_process(),
            mesh=mesh,
            start=start,
            bounds=config.bounds,
            bound_handling=config.bound_handling,
            max_evaluations=config.max_evaluations,
            restarts=config.restarts,
        )
        _write_summary(folder, config, result, objective, clock.elapsed())
    return result


def _check_budget_left(config: OptimizeConfig, metadata: dict[str, Any], where: str) -> None:
    done = metadata.get("num_evaluations", 0)
    if config.max_evaluations is not None and config.max_evaluations < done:
        raise ConfigError(
            "max_evaluations",
            f"max_evaluations must be at least {done}, the evaluations the run in {where} has "
            f"done, got {config.max_evaluations}.",
        )


def _write_summary(folder, config, result, objective, wall: float) -> None:
    rows = folder.read_log()
    folder.plot(
        [row["generation"] + 1 for row in rows],
        {
            "best value": [row["best_value"] for row in rows],
            "value at the mean": [row["mean_value"] for row in rows],
        },
        title=f"{config.strategy} on {config.objective}, d = {config.dim}",
        xlabel="generation",
        ylabel="objective (lower is better)",
        log_y=True,
    )
    folder.write_result(
        {
            "config": dataclasses.asdict(config),
            "sigma": config.initial_sigma(),
            "generations": result.num_generations,
            "num_evaluations": result.num_evaluations,
            "num_restarts": result.num_restarts,
            "stop_reason": result.stop_reason,
            "best_value": result.best_value,
            "optimal_value": objective.optimal_value(config.dim),
            "reached_target": result.reached_target,
            "wall_time_s": wall,
        }
    )
