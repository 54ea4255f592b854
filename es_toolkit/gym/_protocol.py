"""The messages between a ``RolloutPool`` and its workers, one type each.

Over a socket wrapped in a ``multiprocessing`` connection, the parent sends a ``WorkerSpec``
and the worker answers ``Ready`` (or ``Failed``, if it could not build its envs or its
policy). Then, per call, the parent sends a ``Run`` (only where the call's batch lies in
the shared file: the arrays themselves are in that file, and the bytes of a ``Run`` are the
same from call to call while the shapes stay) and the worker answers ``Done`` with what it
ran, or ``Failed``. ``Stop`` ends the worker, as does the parent's end of the socket closing.
"""

from typing import Any, NamedTuple

import numpy as np

from es_toolkit.gym._shared import Layout
from es_toolkit.gym.episodes import EpisodeResults


class WorkerSpec(NamedTuple):
    """What every worker builds once: the env and the policy's NumPy forward pass."""

    env_id: str
    policy_kind: str
    policy_options: dict[str, Any]
    max_episode_steps: int | None = None


class Ready(NamedTuple):
    """The worker built its envs and policy and waits for calls."""

    pid: int


class Run(NamedTuple):
    """Run the call's episodes: its ``EpisodeBatch`` lies in the shared file at ``layout``."""

    layout: Layout


class Stop(NamedTuple):
    """Exit."""


class Done(NamedTuple):
    """The episodes the worker ran (their indices in the batch) and their results."""

    indices: np.ndarray
    results: EpisodeResults


class Failed(NamedTuple):
    """The worker could not start or an episode raised; ``message`` says what, and names the
    member and seed when an episode did."""

    message: str
    member: int | None = None
    seed: int | None = None
