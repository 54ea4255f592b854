"""Evaluation in this process, one member after the other.

A timeout is a ``SIGALRM`` timer that interrupts the objective (see ``call.time_limit``);
signals reach only the main thread, so with a timeout the evaluator must be used there.
"""

from collections.abc import Callable
from typing import Any

from es_toolkit.evaluators.call import Task, in_main_thread, run_task
from es_toolkit.evaluators.evaluator import Evaluator
from es_toolkit.evaluators.outcome import Failure


class SerialEvaluator(Evaluator):
    """Calls the objective here, member by member (or on the whole batch, vectorized)."""

    @property
    def parallelism(self) -> int:
        return 1

    def _run(self, fn: Callable[[Any], Any], tasks: list[Task]) -> list[list[float | Failure]]:
        if self.timeout is not None and not in_main_thread():
            raise RuntimeError(
                "timeout without workers or an executor needs the main thread (it interrupts "
                "the objective with SIGALRM, which only the main thread receives); evaluate "
                "from the main thread, or use workers=N."
            )
        return [run_task(fn, task, self.timeout) for task in tasks]
