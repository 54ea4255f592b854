"""Objectives for tests/test_evaluators.py, at module level so that worker processes
(spawned, Dask's, a ProcessPoolExecutor's) import them by name."""

import os
import pathlib
import signal
import time

import numpy as np


def wavy(x):
    """A member's number: leaves summed after an elementwise nonlinearity."""
    leaves = x.values() if isinstance(x, dict) else [x]
    return float(sum(np.sum(np.sin(3.0 * leaf) + leaf**2) for leaf in leaves))


def wavy_batch(batch):
    """``wavy`` of every member of a batch (leaves stacked along axis 0)."""
    leaves = batch.values() if isinstance(batch, dict) else [batch]
    return sum(
        np.sum(np.sin(3.0 * leaf) + leaf**2, axis=tuple(range(1, leaf.ndim))) for leaf in leaves
    )


def batch_size(batch):
    """Every member's value is the size of the batch it came in."""
    return np.full(len(batch), float(len(batch)))


def _check_sign(x):
    if x[0] < 0:
        raise ValueError(f"negative first coordinate {x[0]:.3f}")


def fails_below_zero(x):
    _check_sign(x)
    return float(np.sum(x))


def returns(value, x):
    """Returns ``value`` whatever the member (with functools.partial)."""
    return value


def batch_of_wrong_length(batch):
    return np.zeros(len(batch) + 1)


def sleeps(seconds, x):
    time.sleep(seconds)
    return float(np.sum(x))


def writes_pid_then_sleeps(path, seconds, x):
    pathlib.Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return float(np.sum(x))


def own_pid(x):
    return float(os.getpid())


def killed_once(marker, x):
    """Kills its own process the first time it runs anywhere (``marker`` says it did)."""
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return wavy(x)
    os.kill(os.getpid(), signal.SIGKILL)
    return 0.0


def always_killed(x):
    if x[0] >= 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return wavy(x)


_LOADS = 0  # how often a ``CountsLoads`` was unpickled in this process


class CountsLoads:
    """An objective that returns how often objectives of its kind were unpickled in the
    process that runs it."""

    def __init__(self, payload):
        self.payload = payload

    def __setstate__(self, state):
        global _LOADS
        _LOADS += 1
        self.__dict__.update(state)

    def __call__(self, x):
        return float(_LOADS)
