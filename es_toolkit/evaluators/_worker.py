"""An evaluation worker process of ``processes.ProcessEvaluator``, and the messages it
exchanges with the parent over its pipe.

The worker says ``Ready`` once started, then answers each ``Call`` with ``Done``: the
outcome of ``call.run_task`` on the call's task. A call carries the pickled objective
only when it differs from the one the worker last received; the worker keeps that one
unpickled, so a heavy closure is unpickled once per worker, not per member. An objective
it cannot unpickle (its module is not importable here) is answered with ``Unloadable``.
The worker exits on ``None`` or when the parent's end of the pipe closes.

Time limits are the parent's business: it kills a worker past the limit, which stops any
objective, even one stuck in C code.
"""

import os
import pickle
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from es_toolkit.evaluators.call import Task, run_task


class Call(NamedTuple):
    """Run ``task``, with the objective pickled in ``function`` (``None``: the same as in
    the worker's last call)."""

    function: bytes | None
    task: Task


class Ready(NamedTuple):
    pid: int


class Done(NamedTuple):
    outcome: list  # one float or Failure per member of the task


class Unloadable(NamedTuple):
    """The objective could not be unpickled here; ``traceback`` says why."""

    traceback: str


def serve(connection: Connection) -> None:
    """The worker's main loop (see the module docstring)."""
    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loaded: tuple[bytes, Any] = (b"", None)  # the last objective, pickled and not
    try:
        connection.send(Ready(os.getpid()))
        while (call := connection.recv()) is not None:
            if call.function is not None and call.function != loaded[0]:
                try:
                    loaded = call.function, pickle.loads(call.function)
                except Exception:
                    loaded = (b"", None)
                    connection.send(Unloadable(traceback.format_exc()))
                    continue
            connection.send(Done(run_task(loaded[1], call.task, None)))
    except (EOFError, OSError):
        pass
