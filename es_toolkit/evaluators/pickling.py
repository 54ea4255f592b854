"""Sending the objective to other processes: pickling it once, and saying what to do
when that cannot work.

``pickle`` sends a function by reference (its module and name), so the receiving process
imports it: a lambda, a function defined inside another, or a closure over something
unpicklable cannot go.
"""

import pickle
from collections.abc import Callable
from typing import Any

ADVICE = (
    "define it at module level (not a lambda or a function inside another), with "
    "picklable arguments (functools.partial of a module-level function works), or pass "
    "it as 'file.py:function'"
)


def pickle_function(fn: Callable[..., Any]) -> bytes:
    """``fn`` pickled, or a TypeError that says how to make it picklable."""
    try:
        return pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise unpicklable_error(fn, error) from error


def unpicklable_error(fn: Callable[..., Any], error: BaseException) -> TypeError:
    """The TypeError for ``fn``, which could not be sent because of ``error``."""
    name = getattr(fn, "__qualname__", type(fn).__name__)
    return TypeError(
        f"the objective {name} cannot be sent to worker processes "
        f"({type(error).__name__}: {error}); {ADVICE}."
    )


def is_pickling_error(error: BaseException) -> bool:
    """Whether ``error`` (from an executor's future) is a failure to pickle or unpickle
    what was sent, which no retry can mend."""
    if isinstance(error, pickle.PickleError):
        return True
    text = str(error)
    return isinstance(error, TypeError | AttributeError) and (
        "pickle" in text or "Can't get attribute" in text
    )
