"""``minimize(..., jit=False)``: a plain Python objective, evaluated from Python.

Each generation asks :class:`~es_toolkit.ask_tell.Optimizer` for its points, evaluates them
serially, on local worker processes or on an executor (``es_toolkit.evaluators``), and tells
the values back; the callback gets a checkpoint after every generation. Only one
generation's evaluations are ever in flight, so a checkpoint always holds whole generations.
"""

import time

import jax
import numpy as np

from es_toolkit._validate import check_bool
from es_toolkit.ask_tell import Optimizer
from es_toolkit.evaluators import EvaluationError, Failure, make_evaluator
from es_toolkit.progress import Progress

ON_ERROR = ("raise", "worst")


def optimize_python(
    f,
    x0,
    *,
    sign,
    strategy=None,
    num_generations=1000,
    key=None,
    target=None,
    callback=None,
    progress=True,
    start=None,
    max_evaluations=None,
    restarts=None,
    evaluate_mean=True,
    bounds=None,
    bound_handling="transform",
    vectorized=False,
    executor=None,
    workers=None,
    timeout=None,
    on_error="raise",
    max_retries=3,
):
    """Runs :func:`es_toolkit.minimize` (``sign=-1``) or ``maximize`` (``sign=1``) with
    ``jit=False``; the arguments are theirs."""
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}.")
    check_bool("vectorized", vectorized)
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}.")
    optimizer = Optimizer(
        strategy,
        x0,
        key=key,
        maximize=sign > 0,
        bounds=bounds,
        bound_handling=bound_handling,
        num_generations=num_generations,
        max_evaluations=max_evaluations,
        target=target,
        restarts=restarts,
        evaluate_mean=evaluate_mean,
        start=start,
    )
    bar = Progress(num_generations, "generation", enabled=progress)
    first_evaluations = int(optimizer.checkpoint.num_evaluations)
    began = time.perf_counter()
    metrics: list[dict[str, np.ndarray]] = []
    stopped_by_callback = False
    with make_evaluator(
        executor=executor, workers=workers, timeout=timeout, max_retries=max_retries
    ) as evaluator:
        while not optimizer.stop():
            points = optimizer.ask()
            members = list(points)
            outcomes = evaluator.evaluate(f, members, vectorized=vectorized)
            values, failures = _values(outcomes, members, on_error)
            told = jax.device_get(optimizer.tell(values))
            generation = {**told, "failures": np.asarray(failures, np.int32)}
            metrics.append(generation)
            best = float(generation["best_value"])
            evaluations = int(optimizer.checkpoint.num_evaluations) - first_evaluations
            rate = evaluations / max(time.perf_counter() - began, 1e-9)
            bar.update(optimizer.generation, best=best, evals_per_s=rate)
            info = {
                "generation": optimizer.generation,
                "metrics": {name: value[None] for name, value in generation.items()},
                "best_value": best,
                "state": optimizer.checkpoint.state,
                "checkpoint": optimizer.checkpoint,
            }
            if callback is not None and callback(info):
                stopped_by_callback = True
                break
    bar.close()
    result = optimizer.result
    names = metrics[0] if metrics else {}
    result = result._replace(metrics={name: np.stack([m[name] for m in metrics]) for name in names})
    return result._replace(stop_reason="callback") if stopped_by_callback else result


def _values(outcomes: list, members: list, on_error: str) -> tuple[np.ndarray, int]:
    """The values to tell (NaN for a failed member under ``"worst"``, which ranks it last)
    and the count of failures; under ``"raise"``, the first failure raises."""
    values = np.empty(len(outcomes))
    failures = 0
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Failure):
            if on_error == "raise":
                raise EvaluationError.from_failure(outcome, members[index])
            failures += 1
            values[index] = np.nan
        else:
            values[index] = outcome
    return values, failures
