"""The ``Evaluator`` interface: a population's members in, one float or ``Failure`` per
member out, in member order, whatever runs the calls.

A call becomes tasks (see ``call.Task``): one per member, or with ``vectorized`` one
contiguous batch per unit of parallelism, each member's leaves stacked along a new
leading axis. Subclasses run the tasks (``_run``); this class splits and reassembles.
"""

import abc
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from es_toolkit._validate import check_bool
from es_toolkit.evaluators.call import Task
from es_toolkit.evaluators.outcome import Failure


class Evaluator(abc.ABC):
    """Evaluates a Python objective on a population; a context manager.

    Attributes:
        timeout: seconds per evaluation, or ``None``.
        max_retries: how often a member whose worker died is run again.
    """

    def __init__(self, timeout: float | None, max_retries: int):
        self.timeout = timeout
        self.max_retries = max_retries

    @property
    @abc.abstractmethod
    def parallelism(self) -> int:
        """How many evaluations run at once."""

    def evaluate(
        self, fn: Callable[[Any], Any], members: Sequence[Any], *, vectorized: bool = False
    ) -> list[float | Failure]:
        """``fn`` on every member.

        Args:
            fn: the objective: a member (a NumPy array or a pytree of them) to a number;
                with ``vectorized``, a batch (each leaf stacked along a new leading axis)
                to one number per member of the batch.
            members: the population, a list of pytrees with NumPy leaves.
            vectorized: call ``fn`` on ``parallelism`` contiguous batches, not per member.

        Returns:
            One entry per member, in order: a float (NaN and infinities included), or a
            ``Failure`` (the objective raised, timed out or returned a non-number; a
            failing batch fails each of its members).

        Raises:
            WorkerLostError: a member's worker died more than ``max_retries`` times.
            TypeError: ``fn`` cannot be sent to the workers.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}.")
        if isinstance(members, str | bytes) or not isinstance(members, Sequence):
            raise TypeError(f"members must be a list of members, got {type(members).__name__}.")
        check_bool("vectorized", vectorized)
        if not members:
            return []
        tasks = make_tasks(list(members), vectorized, self.parallelism)
        return [entry for outcome in self._run(fn, tasks) for entry in outcome]

    @abc.abstractmethod
    def _run(self, fn: Callable[[Any], Any], tasks: list[Task]) -> list[list[float | Failure]]:
        """The outcome of every task (``call.run_task``'s), in task order."""

    def close(self) -> None:  # noqa: B027 (most evaluators start nothing)
        """Stops what this evaluator started (never a caller's executor)."""

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def make_tasks(members: list[Any], vectorized: bool, parallelism: int) -> list[Task]:
    """One task per member, or with ``vectorized`` ``parallelism`` contiguous batches of
    near-equal size (fewer if there are fewer members)."""
    if not vectorized:
        return [Task(index, index + 1, member, False) for index, member in enumerate(members)]
    count = min(parallelism, len(members))
    bounds = batch_bounds(len(members), count)
    return [
        Task(start, stop, stack(members[start:stop]), True)
        for start, stop in itertools.pairwise(bounds)
    ]


def batch_bounds(size: int, count: int) -> list[int]:
    """Where ``count`` contiguous batches of ``size`` members start, and the end: sizes
    differ by at most one, the larger first."""
    sizes = [size // count + (index < size % count) for index in range(count)]
    return [int(bound) for bound in np.cumsum([0, *sizes])]


def stack(members: list[Any]) -> Any:
    """The members' pytrees stacked leaf by leaf along a new leading axis."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(leaf) for leaf in leaves]), *members)
