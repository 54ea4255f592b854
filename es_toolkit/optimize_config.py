"""The settings of an optimization from the command line (``es-toolkit optimize``), checked
field by field: each bad value raises a ``ConfigError`` naming its field.

The objective is a built-in test function (``es_toolkit.objectives``), run jitted in JAX,
or a user's Python function named ``"path/to/file.py:function"`` or
``"package.module:function"`` (``es_toolkit.objective_loading``), whose evaluation
settings (``workers``, ``dask_scheduler``, ``timeout``, ...) only it takes.
"""

import dataclasses
import math
import numbers
import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import _run_config as run_config
from es_toolkit import objective_loading, objectives
from es_toolkit import restarts as restarts_lib
from es_toolkit import strategies as strategies_lib
from es_toolkit._run_config import ConfigError
from es_toolkit.optimize import BOUND_HANDLINGS
from es_toolkit.optimize_start import read_npy, start_vector
from es_toolkit.tracking.run_loggers import check_logger_names

# Fields a resumed optimization may change: they do not alter the generations run (raising
# num_generations or max_evaluations extends the run). Where a Python objective runs
# (workers, a Dask cluster) does not change its values; its timeout may, so it stays.
# Loggers only say where else the numbers go.
RESUMABLE_FIELDS = (
    "num_generations",
    "max_evaluations",
    "devices",
    "workers",
    "dask_scheduler",
    "loggers",
)
ON_ERROR = ("raise", "worst")
DEFAULT_DIM = 10
# The settings of a Python objective's evaluation, and their values when it has none.
PYTHON_ONLY = {
    "vectorized": False,
    "workers": None,
    "dask_scheduler": None,
    "timeout": None,
    "on_error": "raise",
    "max_retries": 3,
}
_SCHEDULER = re.compile(r"(?:tcp://)?(?P<host>[^\s:/]+):(?P<port>\d+)")


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    # A built-in test function (es_toolkit.objectives, run jitted), or a Python function:
    # "path/to/file.py:function" (kept as an absolute path) or "package.module:function".
    objective: str = "rastrigin"
    # None: x0's length when x0 is a list or a .npy file (a dim given must equal it), else 10.
    dim: int | None = None
    strategy: str = "open_es"
    population_size: int = 64
    num_generations: int = 1000
    seed: int = 0
    # None: for a built-in, 5% of its domain width; for a Python objective, 0.25 (high - low)
    # when bounds are finite on both sides, else 1.0.
    sigma: float | None = None
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
    # The start: None, a float (every coordinate), a list of floats, or the path of a .npy
    # file holding a 1-D array (kept as an absolute path). None: a built-in's random start
    # in its domain; for a Python objective, the middle of the bounds when both sides are
    # finite, else the point of the box nearest to 0.
    x0: float | tuple[float, ...] | str | None = None
    # The rest is for a Python objective only (a built-in runs jitted, in JAX):
    vectorized: bool = False  # the function takes (population, dim), returns (population,)
    workers: int | None = None  # evaluate on this many local worker processes
    dask_scheduler: str | None = None  # or on the Dask cluster at "HOST:PORT"
    timeout: float | None = None  # seconds one evaluation may take before it fails
    on_error: str = "raise"  # a failed evaluation: "raise" stops, "worst" scores it worst
    max_retries: int = 3  # evaluations retried after their worker died
    loggers: tuple[str, ...] = ()  # also log to "tensorboard", "wandb" (es_toolkit.tracking)

    def __post_init__(self):
        object.__setattr__(self, "loggers", check_logger_names(self.loggers))
        _check_objective(self)
        _check_x0_and_dim(self)
        _check_python_settings(self)
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

    @property
    def is_python(self) -> bool:
        """Whether the objective is a user's Python function (not a built-in)."""
        return objective_loading.is_spec(self.objective)

    @property
    def objective_label(self) -> str:
        """A short name of the objective: the built-in's, or ``file_stem.function``."""
        if not self.is_python:
            return self.objective
        objective = objective_loading.parse_spec(self.objective)
        where = Path(objective.module).stem if objective.is_file else objective.module
        return f"{where}.{objective.name}"

    def initial_sigma(self) -> float:
        if self.sigma is not None:
            return self.sigma
        if not self.is_python:
            low, high = objectives.get(self.objective).bounds
            return 0.05 * (high - low)
        low, high = self.bounds or (None, None)
        return 1.0 if low is None or high is None else 0.25 * (high - low)

    def default_out(self) -> Path:
        return Path("runs") / (
            f"optimize-{self.objective_label}-d{self.dim}-{self.strategy}-seed{self.seed}"
        )


def _check_objective(config: OptimizeConfig) -> None:
    """A built-in's name, or a spec whose file path is made absolute."""
    objective = config.objective
    if isinstance(objective, str) and objective_loading.is_spec(objective):
        try:
            spec = objective_loading.parse_spec(objective).spec
        except ValueError as error:
            raise ConfigError("objective", str(error)) from None
        object.__setattr__(config, "objective", spec)
    elif objective not in objectives.OBJECTIVES:
        raise ConfigError(
            "objective",
            f"objective must be a built-in ({', '.join(sorted(objectives.OBJECTIVES))}) or "
            f"a Python function as {objective_loading.FORMS}, got {objective!r}.",
        )


def _check_x0_and_dim(config: OptimizeConfig) -> None:
    """``x0`` as None, a float, a tuple of floats or an absolute .npy path, and ``dim``
    resolved from it (a vector's length) or to the default."""
    x0, length = config.x0, None
    if isinstance(x0, np.ndarray | list | tuple):
        x0 = tuple(float(value) for value in start_vector(x0, "x0"))
        length = len(x0)
    elif isinstance(x0, str | os.PathLike):
        x0 = os.path.abspath(x0)
        length = len(start_vector(read_npy(x0), f"x0 ({x0})"))
    elif x0 is not None:
        run_config.require_finite("x0", x0)
        x0 = float(x0)
    object.__setattr__(config, "x0", x0)
    if config.dim is not None:
        run_config.require_int("dim", config.dim, 1)
    if length is None:
        object.__setattr__(config, "dim", DEFAULT_DIM if config.dim is None else config.dim)
    elif config.dim is None:
        object.__setattr__(config, "dim", length)
    elif config.dim != length:
        raise ConfigError(
            "dim",
            f"dim is {config.dim} but x0 has {length} coordinates; leave dim out to take it "
            "from x0.",
        )


def _check_python_settings(config: OptimizeConfig) -> None:
    if not config.is_python:
        for name, default in PYTHON_ONLY.items():
            if getattr(config, name) != default:
                raise ConfigError(
                    name,
                    f"{name} is for a Python function given as objective "
                    f"{objective_loading.FORMS}; the built-in {config.objective!r} runs "
                    f"jitted in JAX: leave {name} out.",
                )
        return
    run_config.require_bool("vectorized", config.vectorized)
    run_config.require_int("workers", config.workers, 1, optional=True)
    run_config.require_positive("timeout", config.timeout, optional=True)
    run_config.require_choice("on_error", config.on_error, ON_ERROR)
    run_config.require_int("max_retries", config.max_retries, 0)
    if config.dask_scheduler is not None:
        match = isinstance(config.dask_scheduler, str) and _SCHEDULER.fullmatch(
            config.dask_scheduler
        )
        if not match or not 0 < int(match["port"]) < 65536:
            raise ConfigError(
                "dask_scheduler",
                "dask_scheduler must be HOST:PORT or tcp://HOST:PORT (a port from 1 to "
                f"65535), got {config.dask_scheduler!r}.",
            )
        if config.workers is not None:
            raise ConfigError(
                "workers",
                "workers starts local worker processes and dask_scheduler sends the "
                "evaluations to a Dask cluster: give one.",
            )
    if config.devices is not None:
        raise ConfigError(
            "devices",
            "devices shards a jitted built-in objective over devices; a Python function "
            "runs on workers or dask_scheduler: leave devices out.",
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


def build_strategy(config: OptimizeConfig) -> strategies_lib.EvolutionStrategy:
    factory = strategies_lib.get_strategy(config.strategy)
    options = {} if config.chunk_size is None else {"chunk_size": config.chunk_size}
    return factory(config.population_size, sigma=config.initial_sigma(), **options)


def optimal_value(config: OptimizeConfig) -> float | None:
    """The objective's least value in ``config.dim`` dimensions (None when unknown, as for
    a Python objective)."""
    if config.is_python:
        return None
    return objectives.get(config.objective).optimal_value(config.dim)
