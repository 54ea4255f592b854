"""Evaluation on a pool of worker processes of our own, which survives its workers.

Workers are fresh interpreters started with ``multiprocessing``'s ``spawn`` (never a fork
of this JAX process); they get this process's ``sys.path`` and import its main module as
``__mp_main__``, so objectives defined in the caller's script or importable here load
there too. Each worker has its own pipe (see ``_worker``); the parent waits on all pipes
and all process sentinels at once (``multiprocessing.connection.wait``) and hands the next
member to whichever worker is free, so members of uneven cost keep every worker busy.

A worker that dies mid-evaluation (killed, out of memory, a crash in C code) is seen by
its sentinel at once: a fresh worker replaces it and the member runs again, at most
``max_retries`` times before a ``WorkerLostError``. A worker past the timeout is killed
(``SIGKILL``) and replaced, which stops any objective, even one stuck in C code; its
members are ``Failure("timeout")``.

``close`` stops every worker, as do a ``KeyboardInterrupt`` while waiting, the pool's
garbage collection and the interpreter's exit; workers also exit when this process's end
of their pipe closes.
"""

import atexit
import collections
import contextlib
import dataclasses
import multiprocessing
import signal
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from es_toolkit.evaluators import _worker
from es_toolkit.evaluators.call import Task, timeout_message
from es_toolkit.evaluators.evaluator import Evaluator
from es_toolkit.evaluators.outcome import Failure, WorkerLostError
from es_toolkit.evaluators.pickling import ADVICE, pickle_function

# A fresh worker imports this package (and so JAX) and the caller's main module; on a
# loaded machine that can take a while.
START_TIMEOUT_S = 120.0
# How long ``close`` lets idle workers exit on their own before it kills them.
EXIT_GRACE_S = 2.0


@dataclasses.dataclass(eq=False)  # one worker is equal only to itself
class _Worker:
    """A worker process and what the parent knows of it."""

    process: BaseProcess
    connection: Connection
    started: float  # time.monotonic() at start
    ready: bool = False  # it said Ready
    function: bytes | None = None  # the pickled objective it holds
    task: int | None = None  # the number of the task it runs
    deadline: float = float("inf")  # when that task times out


@dataclasses.dataclass
class _Progress:
    """Where one ``evaluate`` call stands."""

    tasks: list[Task]
    function: bytes  # the objective, pickled once for the call
    waiting: collections.deque  # numbers of the tasks not handed out yet
    losses: list[int]  # per task, how often its worker died
    outcomes: list[Any]  # per task, its outcome once known


class ProcessEvaluator(Evaluator):
    """``workers`` local worker processes that restart when they die or time out."""

    def __init__(self, workers: int, timeout: float | None, max_retries: int):
        super().__init__(timeout, max_retries)
        self._size = workers
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        # Holds the list, not the evaluator, so it can run when the evaluator is garbage.
        self._closer = weakref.finalize(self, stop_workers, self._workers)
        # Registered after multiprocessing's own exit handler, so it runs before that
        # handler waits for every child process.
        atexit.register(self._closer)
        try:
            self._workers.extend(self._start() for _ in range(workers))
        except BaseException:
            self.close()
            raise

    @property
    def parallelism(self) -> int:
        return self._size

    @property
    def pids(self) -> list[int]:
        """The process ids of the current workers."""
        return [worker.process.pid for worker in self._workers]

    def close(self) -> None:
        """Stops every worker; safe to call twice."""
        self._closer()
        atexit.unregister(self._closer)

    def _run(self, fn: Callable[[Any], Any], tasks: list[Task]) -> list[list[float | Failure]]:
        if not self._closer.alive:
            raise RuntimeError("the evaluator is closed.")
        progress = _Progress(
            tasks,
            pickle_function(fn),
            collections.deque(range(len(tasks))),
            [0] * len(tasks),
            [None] * len(tasks),
        )
        try:
            while progress.waiting or any(worker.task is not None for worker in self._workers):
                self._hand_out(progress)
                handles = {}
                for slot, worker in enumerate(self._workers):
                    handles[worker.connection] = slot
                    handles[worker.process.sentinel] = slot
                for slot in sorted({handles[handle] for handle in wait(handles, self._wait_s())}):
                    self._receive(slot, progress)
                self._expire(progress)
        except Exception:
            # The members still running belong to this call: none may answer the next one.
            for slot, worker in enumerate(self._workers):
                if worker.task is not None:
                    self._replace(slot)
            raise
        except BaseException:  # KeyboardInterrupt: leave nothing running
            self.close()
            raise
        return progress.outcomes

    def _hand_out(self, progress: _Progress) -> None:
        """Gives each free worker the next waiting task."""
        for worker in self._workers:
            if not progress.waiting:
                return
            if not worker.ready or worker.task is not None:
                continue
            number = progress.waiting.popleft()
            function = None if worker.function == progress.function else progress.function
            try:
                worker.connection.send(_worker.Call(function, progress.tasks[number]))
            except OSError:  # it died idle: its sentinel says so next
                progress.waiting.appendleft(number)
                continue
            worker.function = progress.function
            worker.task = number
            if self.timeout is not None:
                worker.deadline = time.monotonic() + self.timeout

    def _receive(self, slot: int, progress: _Progress) -> None:
        """Handles what woke worker ``slot``'s handles: a message or its death."""
        worker = self._workers[slot]
        try:
            message = worker.connection.recv() if worker.connection.poll() else None
        except (EOFError, OSError):
            message = None
        if isinstance(message, _worker.Ready):
            worker.ready = True
        elif isinstance(message, _worker.Done):
            progress.outcomes[worker.task] = message.outcome
            worker.task, worker.deadline = None, float("inf")
        elif isinstance(message, _worker.Unloadable):
            worker.function, worker.task = None, None
            raise TypeError(
                "a worker process could not load the objective (a function defined in an "
                f"interactive session, or in a module the workers cannot import?); {ADVICE}. "
                f"Loading it failed with:\n{message.traceback}"
            )
        elif message is None:  # its pipe closed: it died or is dying
            self._lost(slot, progress)

    def _lost(self, slot: int, progress: _Progress) -> None:
        """Worker ``slot`` died: replace it and run its task again, if retries allow."""
        worker = self._workers[slot]
        worker.process.join(EXIT_GRACE_S)
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join()
        cause = exit_cause(worker.process)
        pid, ready, number = worker.process.pid, worker.ready, worker.task
        self._replace(slot)
        if not ready:
            raise RuntimeError(
                f"an evaluation worker (pid {pid}) {cause} while starting; see "
                "its error above. A script that evaluates on workers=N needs its top-level "
                "code under `if __name__ == '__main__':`."
            )
        if number is None:
            return
        progress.losses[number] += 1
        if progress.losses[number] > self.max_retries:
            task = progress.tasks[number]
            raise WorkerLostError(
                f"{task.label}: its worker process died {progress.losses[number]} times "
                f"(max_retries={self.max_retries}); the last time it {cause}.",
                task.start,
            )
        progress.waiting.appendleft(number)

    def _expire(self, progress: _Progress) -> None:
        """Kills the workers past their task's deadline; their members timed out, and
        raises if a worker takes too long to start."""
        now = time.monotonic()
        for slot, worker in enumerate(self._workers):
            if worker.task is not None and worker.deadline <= now:
                task = progress.tasks[worker.task]
                message = timeout_message(self.timeout)
                progress.outcomes[worker.task] = [
                    Failure(index, "timeout", message) for index in range(task.start, task.stop)
                ]
                self._replace(slot)
            elif not worker.ready and worker.started + START_TIMEOUT_S <= now:
                raise RuntimeError(
                    f"an evaluation worker (pid {worker.process.pid}) did not start within "
                    f"{START_TIMEOUT_S:g} s."
                )

    def _wait_s(self) -> float | None:
        """Seconds until the next deadline (a task's timeout, a worker's start)."""
        deadlines = [
            worker.deadline if worker.ready else worker.started + START_TIMEOUT_S
            for worker in self._workers
        ]
        deadline = min(deadlines, default=float("inf"))
        return None if deadline == float("inf") else max(0.0, deadline - time.monotonic())

    def _replace(self, slot: int) -> None:
        """Kills worker ``slot`` and starts a fresh one in its place."""
        stop_workers([self._workers[slot]], grace_s=0.0)
        self._workers[slot] = self._start()

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_worker.serve, args=(child_end,), name="es_toolkit-evaluator"
        )
        process.start()
        child_end.close()
        return _Worker(process, parent_end, time.monotonic())


def stop_workers(workers: list[_Worker], grace_s: float = EXIT_GRACE_S) -> None:
    """Asks the idle workers to exit, waits ``grace_s`` seconds in all, kills the rest
    (busy and still starting ones at once), and empties ``workers``."""
    idle = [worker for worker in workers if worker.ready and worker.task is None]
    for worker in idle:
        with contextlib.suppress(OSError, ValueError):
            worker.connection.send(None)
    deadline = time.monotonic() + grace_s
    for worker in workers:
        if worker in idle:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join()
        worker.connection.close()
        worker.process.close()
    workers.clear()


def exit_cause(process: BaseProcess) -> str:
    """How ``process``, which ended, ended: "was killed by SIGKILL", "exited with code 1"."""
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
