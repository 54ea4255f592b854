"""Where a run's episodes run: one backend per kind of environment, behind one protocol.

A backend builds the policy and strategy for its envs, runs blocks of generations
(``block(length)(state) -> (state, per-generation metrics, evaluation returns)``) and
evaluates a policy. The loop (``training.loop``) knows nothing else of it. A new kind of
environment is one new module with a backend class, registered in ``BACKENDS``.
"""

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from es_toolkit.policies import Policy
from es_toolkit.strategies import EvolutionStrategy
from es_toolkit.training.config import TrainConfig
from es_toolkit.training.gymnasium_envs import GymnasiumBackend
from es_toolkit.training.jax_envs import JaxEnvBackend
from es_toolkit.training.state import TrainState

Block = Callable[[TrainState], tuple[TrainState, dict[str, Any], Any]]


class Backend(Protocol):
    name: str
    policy: Policy
    strategy: EvolutionStrategy
    observation_shape: tuple[int, ...]

    def __init__(self, config: TrainConfig) -> None: ...

    @staticmethod
    def handles(env_id: str) -> bool:
        """Whether ``backend="auto"`` should run ``env_id`` here."""
        ...

    def block(self, length: int) -> Block: ...

    def evaluate(self, key: Any, params: Any, obs_stats: Any, num_episodes: int) -> np.ndarray: ...

    def close(self) -> None: ...


# In the order ``backend="auto"`` tries them: the first that handles the env is used.
BACKENDS: dict[str, type[Backend]] = {"jax": JaxEnvBackend, "gymnasium": GymnasiumBackend}


def resolve_backend(config: TrainConfig) -> str:
    """The backend's name: ``config.backend``, or for ``auto`` the first that handles
    ``config.env``."""
    if config.backend == "auto":
        return next(name for name, cls in BACKENDS.items() if cls.handles(config.env))
    return config.backend


def open_backend(config: TrainConfig) -> Backend:
    """The backend for ``config``, started (close it, or use it as a context manager)."""
    return BACKENDS[resolve_backend(config)](config)
