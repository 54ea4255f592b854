"""Evaluation on any ``concurrent.futures.Executor``: a ``ProcessPoolExecutor``, Dask's
``client.get_executor()``, mpi4py's ``MPIPoolExecutor``.

Each task is submitted as ``call.run_task(fn, task, timeout)``, so the objective's errors
come back as ``Failure`` values and any exception out of a future is the executor's: a
dead worker (Dask's ``KilledWorker``, a closed connection, ...) makes the task run again,
up to ``max_retries`` times. A ``BrokenExecutor`` (a ``ProcessPoolExecutor`` whose worker
died) cannot run anything more, so it is a ``WorkerLostError`` at once.

Timeouts: ``run_task`` arms a ``SIGALRM`` timer where it runs in its process's main
thread (a ``ProcessPoolExecutor`` or MPI worker), which interrupts the objective. This
side also stops waiting ``timeout`` seconds after submitting a task (plus a grace period
for executors whose workers arm the timer) and counts it as timed out. Thread-based
executors, Dask's among them, cannot interrupt a running call: it counts as failed but
may go on in the background, holding a worker thread, and their clock includes the time
a fresh worker takes to import what the call needs. With a timeout at most
``parallelism`` tasks are submitted at a time, so that time spent queued in the executor
does not count; without one, all of them at once.

Dask tasks are submitted with ``pure=False``: identical (function, member) submissions are
distinct tasks, so a retry after a failure really runs again.
"""

import collections
import concurrent.futures as cf
import time
from collections.abc import Callable
from typing import Any

from es_toolkit.evaluators.call import Task, run_task, timeout_message
from es_toolkit.evaluators.evaluator import Evaluator
from es_toolkit.evaluators.outcome import Failure, WorkerLostError
from es_toolkit.evaluators.pickling import is_pickling_error, unpicklable_error

# Seconds past the timeout before this side gives up on a task whose worker arms its own
# timer (which is what normally ends a long call): room for the executor to start its
# worker processes, which import this package and the caller's modules, and to pass the
# result back. Only an objective stuck where signals cannot reach it waits this long.
TIMEOUT_GRACE_S = 30.0


class ExecutorEvaluator(Evaluator):
    """Runs the tasks on a caller's executor, which it never shuts down."""

    def __init__(self, executor: cf.Executor, timeout: float | None, max_retries: int):
        super().__init__(timeout, max_retries)
        self.executor = executor
        self._client = dask_client(executor)
        threads = self._client is not None or isinstance(executor, cf.ThreadPoolExecutor)
        self._grace_s = 0.0 if threads else TIMEOUT_GRACE_S

    @property
    def parallelism(self) -> int:
        """The Dask cluster's threads, or the executor's maximum number of workers where it
        tells; else 1."""
        if self._client is not None:
            return max(1, sum(self._client.nthreads().values()))
        for attribute in ("num_workers", "_max_workers"):
            value = getattr(self.executor, attribute, None)
            if isinstance(value, int) and value >= 1:
                return value
        return 1

    def _run(self, fn: Callable[[Any], Any], tasks: list[Task]) -> list[list[float | Failure]]:
        window = len(tasks) if self.timeout is None else self.parallelism
        waiting = collections.deque(range(len(tasks)))
        losses = [0] * len(tasks)
        outcomes: list[Any] = [None] * len(tasks)
        running: dict[cf.Future, tuple[int, float]] = {}  # task number, deadline
        try:
            while waiting or running:
                while waiting and len(running) < window:
                    number = waiting.popleft()
                    running[self._submit(fn, tasks[number])] = number, self._deadline()
                done, _ = cf.wait(running, self._wait_s(running), cf.FIRST_COMPLETED)
                for future in done:
                    number, _ = running.pop(future)
                    try:
                        outcomes[number] = future.result()
                    except Exception as error:
                        losses[number] += 1
                        self._check_retry(fn, tasks[number], error, losses[number])
                        waiting.appendleft(number)
                now = time.monotonic()
                for future, (number, deadline) in list(running.items()):
                    if deadline <= now:
                        future.cancel()
                        del running[future]
                        outcomes[number] = self._timed_out(tasks[number])
        except BaseException:
            for future in running:
                future.cancel()
            raise
        return outcomes

    def _submit(self, fn: Callable[[Any], Any], task: Task) -> cf.Future:
        options = {} if self._client is None else {"pure": False}
        try:
            return self.executor.submit(run_task, fn, task, self.timeout, **options)
        except cf.BrokenExecutor as error:
            raise broken_executor_error(task, error) from error
        except Exception as error:
            if is_pickling_error(error):
                raise unpicklable_error(fn, error) from error
            raise

    def _check_retry(
        self, fn: Callable[[Any], Any], task: Task, error: Exception, losses: int
    ) -> None:
        """Raises unless ``task``, whose future raised ``error`` for the ``losses``-th
        time, may run again."""
        if isinstance(error, cf.BrokenExecutor):
            raise broken_executor_error(task, error) from error
        if is_pickling_error(error):
            raise unpicklable_error(fn, error) from error
        if losses > self.max_retries:
            raise WorkerLostError(
                f"{task.label}: its worker was lost {losses} times (max_retries="
                f"{self.max_retries}); the last time: {type(error).__name__}: {error}",
                task.start,
            ) from error

    def _deadline(self) -> float:
        if self.timeout is None:
            return float("inf")
        return time.monotonic() + self.timeout + self._grace_s

    def _wait_s(self, running: dict[cf.Future, tuple[int, float]]) -> float | None:
        if self.timeout is None:
            return None
        return max(0.0, min(deadline for _, deadline in running.values()) - time.monotonic())

    def _timed_out(self, task: Task) -> list[Failure]:
        message = timeout_message(self.timeout)
        return [Failure(index, "timeout", message) for index in range(task.start, task.stop)]


def broken_executor_error(task: Task, error: BaseException) -> WorkerLostError:
    return WorkerLostError(
        f"{task.label}: the executor broke ({type(error).__name__}: {error}); a broken "
        "executor, such as a ProcessPoolExecutor one of whose processes died, runs nothing "
        "more. Use workers=N instead: that pool restarts a dead worker and runs its member "
        "again.",
        task.start,
    )


def dask_client(executor: cf.Executor) -> Any:
    """The ``distributed.Client`` behind Dask's executor, or ``None`` for any other."""
    if type(executor).__module__.split(".")[0] != "distributed":
        return None
    return getattr(executor, "_client", None)
