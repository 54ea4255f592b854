"""What an evaluation gives besides a number: a member's ``Failure``, and the errors a
caller raises for them.

A ``Failure`` is data, not an exception: the objective's own errors, non-numbers and
timeouts come back in the evaluator's result list in place of the member's value, so the
caller decides what they mean (raise, skip, penalize). ``WorkerLostError`` is raised by the
evaluators themselves: it is about the machinery (a process that keeps dying), not the
objective's answer.
"""

from typing import Any, NamedTuple

import numpy as np

FAILURE_KINDS = ("error", "timeout", "value")
# Longest short description of a member or a returned value.
SHORT_REPR_CHARS = 200


class Failure(NamedTuple):
    """One member's failed evaluation.

    Attributes:
        index: the member's index in the population.
        kind: ``"error"`` (the objective raised), ``"timeout"`` (it ran past the limit) or
            ``"value"`` (it returned something other than a number).
        message: for ``"error"`` the objective's formatted traceback, for ``"value"`` what
            it returned (type and a shortened repr), for ``"timeout"`` the limit.
    """

    index: int
    kind: str
    message: str


class EvaluationError(RuntimeError):
    """The objective failed on a member (raised by callers that stop on a failure);
    ``x`` holds the member's parameters when known."""

    def __init__(self, message: str, failure: Failure | None = None, x: Any = None):
        super().__init__(message)
        self.failure = failure
        self.x = x

    @classmethod
    def from_failure(cls, failure: Failure, x: Any) -> "EvaluationError":
        """The error for ``failure``, naming the member's index and (shortened) its ``x``.

        Args:
            failure: the member's ``Failure``.
            x: the member's parameters (kept whole as the error's ``x``).

        Returns:
            An ``EvaluationError`` whose message holds the index, ``x`` and the
            traceback (or what was returned, or the limit).
        """
        where = f"member {failure.index} (x: {short_repr(x)})"
        if failure.kind == "error":
            message = f"the objective raised on {where}:\n{failure.message.rstrip()}"
        elif failure.kind == "timeout":
            message = f"the objective did not finish on {where}: {failure.message}"
        else:
            message = f"the objective returned a non-number on {where}: {failure.message}"
        return cls(message, failure, x)


class WorkerLostError(RuntimeError):
    """The process evaluating a member died more often than retries allow, or the
    executor running it broke; the message names the member and the cause."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def short_repr(value: Any, limit: int = SHORT_REPR_CHARS) -> str:
    """``repr(value)`` with arrays summarized and the whole cut to ``limit`` characters."""
    with np.printoptions(threshold=8, edgeitems=3, precision=6):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_value(value: Any) -> str:
    """What a non-number returned by the objective is: its type, its shape if it has
    one, and a short repr."""
    shape = getattr(value, "shape", None)
    kind = type(value).__name__ if shape is None else f"{type(value).__name__} of shape {shape}"
    return f"{kind}: {short_repr(value)}"
