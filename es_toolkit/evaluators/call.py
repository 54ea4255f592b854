"""The call of the objective on one task, as it runs where the evaluation happens (this
process, a worker process, an executor's worker): never raises for the objective's sake.

A task is one member, or with ``vectorized`` a contiguous batch of members stacked per
leaf. ``run_task`` calls the objective under a time limit, turns what it raised into a
``Failure`` holding the formatted traceback, and checks that what it returned is a
number (one per member for a batch). Its only exceptions are the process's own:
``KeyboardInterrupt``, ``SystemExit``, running out of memory.

The time limit is a ``SIGALRM`` timer whose handler raises inside the objective; signals
reach only a process's main thread, so elsewhere (a thread pool, Dask's worker threads)
no timer is armed and the caller has to stop waiting by itself.
"""

import contextlib
import numbers
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from es_toolkit.evaluators.outcome import Failure, describe_value


class Task(NamedTuple):
    """Members ``start`` to ``stop - 1``: ``payload`` is the member itself, or with
    ``vectorized`` the batch of them stacked along a new leading axis of every leaf."""

    start: int
    stop: int
    payload: Any
    vectorized: bool

    @property
    def label(self) -> str:
        """The members, as errors name them."""
        if self.stop - self.start == 1:
            return f"member {self.start}"
        return f"members {self.start} to {self.stop - 1}"


class _TimedOut(BaseException):
    """Raised by the timer inside the objective; a ``BaseException`` so that the
    objective's own ``except Exception`` does not swallow it."""


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def timeout_message(timeout: float) -> str:
    return f"it did not finish within the timeout of {timeout:g} s."


@contextlib.contextmanager
def time_limit(timeout: float | None) -> Iterator[None]:
    """Raises ``_TimedOut`` in the body once ``timeout`` seconds have passed; the
    previous ``SIGALRM`` handler and timer are restored afterwards. Main thread only."""
    if timeout is None:
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise _TimedOut

    previous_handler = signal.signal(signal.SIGALRM, alarm)
    previous_timer = signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        # Disarmed before the handler goes back, so a late alarm never meets SIG_DFL.
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *previous_timer)


def run_task(fn: Callable[[Any], Any], task: Task, timeout: float | None) -> list[float | Failure]:
    """``fn`` on ``task``: one float or ``Failure`` per member of the task, in order.

    Args:
        fn: the objective.
        task: the member (or batch) to evaluate.
        timeout: seconds before the call counts as timed out (``None``: no limit). The
            timer is armed only in a process's main thread; elsewhere it is ignored.

    Returns:
        ``task.stop - task.start`` entries, each a float or a ``Failure``.
    """
    indices = range(task.start, task.stop)
    armed = timeout if in_main_thread() else None
    try:
        with time_limit(armed):
            value = fn(task.payload)
    except _TimedOut:
        return [Failure(index, "timeout", timeout_message(timeout)) for index in indices]
    except Exception as error:
        # The traceback starts at the objective's frame, not this one.
        lines = traceback.format_exception(type(error), error, error.__traceback__.tb_next)
        return [Failure(index, "error", "".join(lines)) for index in indices]
    if not task.vectorized:
        number = as_number(value)
        if number is None:
            return [Failure(task.start, "value", f"it returned {describe_value(value)}")]
        return [number]
    values = as_numbers(value, len(indices))
    if values is None:
        message = (
            f"it returned {describe_value(value)}; a vectorized objective must return "
            f"{len(indices)} numbers, one per member of its batch."
        )
        return [Failure(index, "value", message) for index in indices]
    return values


def as_number(value: Any) -> float | None:
    """``value`` as a float if it is one real number (a Python or NumPy scalar, a 0-d
    array); ``None`` otherwise (booleans, complex numbers, strings, arrays with elements)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "shape", None) == () and hasattr(value, "dtype"):
        array = np.asarray(value)
        if _is_real(array.dtype):
            return float(array)
    return None


def as_numbers(values: Any, count: int) -> list[float] | None:
    """``values`` as ``count`` floats if it is a sequence or 1-D array of that many real
    numbers; ``None`` otherwise."""
    if isinstance(values, list | tuple):
        if len(values) != count:
            return None
        numbers_ = [as_number(value) for value in values]
        return None if any(number is None for number in numbers_) else numbers_
    if getattr(values, "shape", None) == (count,) and hasattr(values, "dtype"):
        array = np.asarray(values)
        if _is_real(array.dtype):
            return array.astype(np.float64).tolist()
    return None


def _is_real(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
