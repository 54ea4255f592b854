"""An optimization into a run folder, as ``train`` does for policies: a JSONL log per
generation, a checkpoint after every block (every generation for a Python objective;
``--resume`` continues it exactly, restarts included), a PNG curve and ``result.json``.

A built-in objective runs jitted; a Python function runs in this process, on ``workers``
local processes or on a Dask cluster (see ``optimize_config``).
"""

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from es_toolkit import _run_config as run_config
from es_toolkit import objective_loading, objectives, parallel
from es_toolkit._run_config import ConfigError
from es_toolkit.evaluators import EvaluationError
from es_toolkit.optimize import OptimizeResult, minimize, resume_template
from es_toolkit.optimize_config import (
    RESUMABLE_FIELDS,
    OptimizeConfig,
    build_strategy,
    optimal_value,
)
from es_toolkit.optimize_start import initial_point
from es_toolkit.run_folder import RunClock, RunFolder
from es_toolkit.tracking import Logger, callback_rows
from es_toolkit.tracking.run_loggers import run_loggers, split_loggers

FAILED_MEMBER_NAME = "failed_member.npy"  # the x of the member a run stopped on


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
    loggers: Sequence[str | Logger] = (),
) -> OptimizeResult:
    """Minimizes ``config.objective`` from its start (:func:`initial_point`), writing the
    run folder ``out``.

    ``loggers`` are where else the records go (``es_toolkit.tracking``): names
    (``"tensorboard"``, ``"wandb"``), added to ``config.loggers`` and so kept by a resumed
    run, or logger objects, which get every log row, the config and the curve, and which
    are theirs to close.

    A built-in runs jitted, with a checkpoint after every block of generations; a Python
    objective is loaded by its spec (in every process that evaluates it) and runs through
    ``minimize(..., jit=False)``, with a checkpoint after every generation.

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
    names, objects = split_loggers(loggers)
    config = dataclasses.replace(config, loggers=(*config.loggers, *names))
    if config.is_python:
        f = objective_loading.load_objective(config.objective)
    else:
        f = objectives.get(config.objective).fn
    strategy = build_strategy(config)
    key = jax.random.key(config.seed)
    x0 = initial_point(config, jax.random.fold_in(key, 0))
    with contextlib.ExitStack() as stack:
        evaluation = stack.enter_context(_evaluation_options(config))
        stack.enter_context(folder.claim(resume=resume, overwrite=overwrite))
        start = None
        if resume:
            # After a restart the state has the shapes of that run's population.
            size = metadata.get("run_population_size", config.population_size)
            current = strategy.rebuild(population_size=size)
            start, _ = folder.load_checkpoint(resume_template(current, x0))
            folder.truncate_log(int(start.generation))
        tracking = stack.enter_context(
            run_loggers(config.loggers, folder, dataclasses.asdict(config), metadata, objects)
        )
        clock = RunClock(metadata.get("wall_time_s", 0.0))

        def record(info: dict[str, Any]) -> None:
            rows = callback_rows(info)
            checkpoint = info["checkpoint"]
            if config.is_python:
                # One generation per call: the count after it (a killed run's resume
                # shows in the log as a count that goes on without a gap).
                rows = [{**row, "num_evaluations": int(checkpoint.num_evaluations)} for row in rows]
            wall = clock.elapsed()
            rows = [{**row, "wall_time": wall} for row in rows]
            folder.append_log(rows)
            tracking.log_metrics(rows)  # the rows the log got
            saved = {
                "config": dataclasses.asdict(config),
                "generation": info["generation"],
                "num_evaluations": int(checkpoint.num_evaluations),
                "run_population_size": int(checkpoint.run.population_size),
                "wall_time_s": wall,
                **tracking.metadata,
            }
            folder.save_checkpoint(checkpoint, saved)

        try:
            result = minimize(
                f,
                x0,
                strategy=strategy,
                num_generations=config.num_generations,
                key=jax.random.fold_in(key, 1),
                target=config.target,
                callback=record,
                progress=progress and parallel.is_main_process(),
                start=start,
                bounds=config.bounds,
                bound_handling=config.bound_handling,
                max_evaluations=config.max_evaluations,
                restarts=config.restarts,
                **evaluation,
            )
        except EvaluationError as error:
            raise _with_saved_member(error, folder) from error
        _write_summary(folder, config, result, clock.elapsed())
        tracking.log_image("curve", folder.curve)
    return result


def _with_saved_member(error: EvaluationError, folder: RunFolder) -> EvaluationError:
    """``error`` with the failed member's whole ``x`` saved in the run folder (its message
    shows only a summary), and how to continue once the objective is fixed."""
    path = folder.path / FAILED_MEMBER_NAME
    np.save(path, np.asarray(error.x))
    return EvaluationError(
        f"{error}\nIts x is saved to {path}. The checkpoint holds every generation before "
        f"this one: fix the objective and continue with --resume --out {folder.path}.",
        error.failure,
        error.x,
    )


@contextlib.contextmanager
def _evaluation_options(config: OptimizeConfig) -> Iterator[dict[str, Any]]:
    """``minimize``'s options for where the objective runs: a built-in, jitted (in chunks
    of ``chunk_size`` members, sharded over ``devices``, or all devices of a multi-process
    run); a Python objective in this process, on ``workers``, or on the Dask cluster at
    ``dask_scheduler`` (its client closed on the way out)."""
    if not config.is_python:
        mesh = config.devices or (jax.device_count() if jax.process_count() > 1 else None)
        yield {"mesh": mesh, "chunk_size": config.chunk_size}
        return
    options = {
        "jit": False,
        "vectorized": config.vectorized,
        "workers": config.workers,
        "timeout": config.timeout,
        "on_error": config.on_error,
        "max_retries": config.max_retries,
    }
    if config.dask_scheduler is None:
        yield options
        return
    with dask_client(config.dask_scheduler) as client:
        yield {**options, "executor": client.get_executor()}


@contextlib.contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` connected to the scheduler at ``address`` (``HOST:PORT``
    or ``tcp://HOST:PORT``), closed on the way out."""
    try:
        from distributed import Client
    except ImportError as error:
        raise ImportError(
            f'dask_scheduler needs Dask\'s distributed ({error}): pip install "es_toolkit[dask]".'
        ) from None
    address = address if "://" in address else f"tcp://{address}"
    client = Client(address, set_as_default=False)
    try:
        yield client
    finally:
        client.close()


def _check_budget_left(config: OptimizeConfig, metadata: dict[str, Any], where: str) -> None:
    done = metadata.get("num_evaluations", 0)
    if config.max_evaluations is not None and config.max_evaluations < done:
        raise ConfigError(
            "max_evaluations",
            f"max_evaluations must be at least {done}, the evaluations the run in {where} has "
            f"done, got {config.max_evaluations}.",
        )


def _write_summary(folder, config, result, wall: float) -> None:
    rows = folder.read_log()
    folder.plot(
        [row["generation"] + 1 for row in rows],
        {
            "best value": [row["best_value"] for row in rows],
            "value at the mean": [row["mean_value"] for row in rows],
        },
        title=f"{config.strategy} on {config.objective_label}, d = {config.dim}",
        xlabel="generation",
        ylabel="objective (lower is better)",
        log_y=True,
    )
    summary = {
        "config": dataclasses.asdict(config),
        "sigma": config.initial_sigma(),
        "generations": result.num_generations,
        "num_evaluations": result.num_evaluations,
        "num_restarts": result.num_restarts,
        "stop_reason": result.stop_reason,
        "best_value": result.best_value,
        "optimal_value": optimal_value(config),
        "reached_target": result.reached_target,
        "wall_time_s": wall,
    }
    if any("failures" in row for row in rows):
        # Over the whole run, resumed sessions included (the log holds them all).
        summary["failures"] = sum(int(row.get("failures", 0)) for row in rows)
    folder.write_result(summary)
