"""JAX-native environments, installed as ``es_toolkit.envs``.

Each environment is a port of a Gymnasium task with gymnax's functional shape:
``reset(key, env_params) -> (obs, state)`` and
``step(key, state, action, env_params) -> (obs, state, reward, terminated, truncated, info)``.
``make(env_id)`` returns one by its Gymnasium id.
"""

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[[], Any]] = {}


def registered() -> tuple[str, ...]:
    """The ids that ``make`` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def make(env_id: str) -> Any:
    """Returns the JAX-native environment registered under ``env_id``."""
    if env_id not in _REGISTRY:
        available = ", ".join(registered()) or "none yet"
        raise ValueError(
            f"env_id {env_id!r} is not a JAX-native environment; available: {available}."
        )
    return _REGISTRY[env_id]()
