"""Evaluating a plain Python objective on a population: serially, on worker processes of
our own, or on any ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, a Dask
cluster's ``client.get_executor()``, mpi4py's ``MPIPoolExecutor``).

The objective takes one member (a NumPy array or a pytree of them) and returns a number,
or with ``vectorized`` takes a batch (leaves stacked along a new leading axis) and
returns one number per member. Every evaluator returns, in member order, a float or a
``Failure`` per member, the same whichever runs it. The objective's own exceptions never
escape: they come back as ``Failure("error")`` with the traceback. Workers that die are
replaced (or the executor reschedules) and the member runs again, up to ``max_retries``
times. Example::

    from es_toolkit.evaluators import make_evaluator

    with make_evaluator(workers=4, timeout=60.0) as evaluator:
        values = evaluator.evaluate(simulate, members)
"""

import concurrent.futures as cf
from typing import Any

from es_toolkit._validate import check_int, check_optional_int, check_positive_scalar
from es_toolkit.evaluators.evaluator import Evaluator
from es_toolkit.evaluators.futures import ExecutorEvaluator
from es_toolkit.evaluators.outcome import EvaluationError, Failure, WorkerLostError
from es_toolkit.evaluators.processes import ProcessEvaluator
from es_toolkit.evaluators.serial import SerialEvaluator

__all__ = ["EvaluationError", "Evaluator", "Failure", "WorkerLostError", "make_evaluator"]


def make_evaluator(
    *,
    executor: cf.Executor | None = None,
    workers: int | None = None,
    timeout: float | None = None,
    max_retries: int = 3,
) -> Evaluator:
    """An evaluator for a Python objective.

    Args:
        executor: a ``concurrent.futures.Executor`` to run evaluations on; never shut
            down here. Its workers must be able to import ``es_toolkit`` and the
            objective.
        workers: start this many local worker processes (``spawn``), which are restarted
            when they die or time out; stopped by the evaluator's ``close``.
        timeout: seconds one evaluation may take (``None``: no limit); past it the member
            is a ``Failure("timeout")``. Without workers or an executor it needs the main
            thread; a thread-based executor (Dask's) stops waiting but cannot stop the
            call.
        max_retries: how often a member whose worker died runs again before a
            ``WorkerLostError``.

    Returns:
        A ``SerialEvaluator`` (neither ``executor`` nor ``workers``: in this process), a
        ``ProcessEvaluator`` or an ``ExecutorEvaluator``; use it as a context manager.

    Raises:
        ValueError: both ``executor`` and ``workers``, or a value out of range.
        TypeError: an argument of the wrong type.
    """
    if executor is not None and workers is not None:
        raise ValueError(
            f"give executor or workers, not both (got executor={executor!r} and "
            f"workers={workers!r})."
        )
    if executor is not None and not isinstance(executor, cf.Executor):
        hint = " (for a Dask client, pass client.get_executor())" if _is_client(executor) else ""
        raise TypeError(
            f"executor must be a concurrent.futures.Executor{hint}, got {type(executor).__name__}."
        )
    workers = check_optional_int("workers", workers, minimum=1)
    if timeout is not None:
        check_positive_scalar("timeout", timeout)
        timeout = float(timeout)
    max_retries = check_int("max_retries", max_retries, minimum=0)
    if executor is not None:
        return ExecutorEvaluator(executor, timeout, max_retries)
    if workers is not None:
        return ProcessEvaluator(workers, timeout, max_retries)
    return SerialEvaluator(timeout, max_retries)


def _is_client(value: Any) -> bool:
    return callable(getattr(value, "get_executor", None))
