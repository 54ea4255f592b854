"""An optimization of a test objective (``es_toolkit.objectives``) into a run folder, as
``train`` does for policies: a JSONL log per generation, a PNG curve and ``result.json``.
"""

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from es_toolkit import objectives, parallel
from es_toolkit import strategies as strategies_lib
from es_toolkit._validate import check_int
from es_toolkit.optimize import OptimizeResult, minimize
from es_toolkit.report import metrics_rows
from es_toolkit.run_folder import RunFolder


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    objective: str = "rastrigin"
    dim: int = 10
    strategy: str = "open_es"
    population_size: int = 64
    num_generations: int = 1000
    seed: int = 0
    sigma: float | None = None  # None: 5% of the objective's domain width
    chunk_size: int | None = None
    target: float | None = None  # stop once the best value is at most this
    devices: int | None = None  # shard the population over this many devices

    def __post_init__(self):
        objectives.get(self.objective)
        strategies_lib.get_strategy(self.strategy)
        check_int("dim", self.dim, minimum=1)
        check_int("seed", self.seed, minimum=0)

    def initial_sigma(self) -> float:
        low, high = objectives.get(self.objective).bounds
        return self.sigma if self.sigma is not None else 0.05 * (high - low)

    def default_out(self) -> Path:
        return Path("runs") / (
            f"optimize-{self.objective}-d{self.dim}-{self.strategy}-seed{self.seed}"
        )


def run_optimization(
    config: OptimizeConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> OptimizeResult:
    """Minimizes ``config.objective`` from a random start, writing the run folder ``out``."""
    objective = objectives.get(config.objective)
    sigma = config.initial_sigma()
    strategy = strategies_lib.get_strategy(config.strategy)(config.population_size, sigma=sigma)
    folder = RunFolder(out, writer=parallel.is_main_process())
    key = jax.random.key(config.seed)
    x0 = objective.init(jax.random.fold_in(key, 0), config.dim)
    with folder.claim(overwrite=overwrite):
        start = time.perf_counter()
        written = 0

        def record(info: dict[str, Any]) -> None:
            nonlocal written
            rows = metrics_rows(info["metrics"], written)
            wall = time.perf_counter() - start
            folder.append_log([{**row, "wall_time": wall} for row in rows])
            written += len(rows)

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
        )
        wall = time.perf_counter() - start
        folder.plot(
            np.arange(1, result.num_generations + 1),
            {
                "best value": result.metrics["best_value"],
                "value at the mean": result.metrics["mean_value"],
            },
            title=f"{config.strategy} on {config.objective}, d = {config.dim}",
            xlabel="generation",
            ylabel="objective (lower is better)",
            log_y=True,
        )
        folder.write_result(
            {
                "config": dataclasses.asdict(config),
                "sigma": sigma,
                "generations": result.num_generations,
                "best_value": result.best_value,
                "optimal_value": objective.optimal_value(config.dim),
                "reached_target": result.reached_target,
                "wall_time_s": wall,
            }
        )
    return result
