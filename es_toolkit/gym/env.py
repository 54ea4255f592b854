"""Gymnasium environments by id, with errors that say what to install or what is missing.

Gymnasium is imported lazily, here only: the rest of es_toolkit works without it.
"""

import importlib
from typing import Any

from es_toolkit.policies import spaces

# Which es_toolkit extra installs the simulator behind an env's entry point.
_EXTRAS = {"mujoco": "mujoco", "box2d": "box2d"}


def import_gymnasium():
    """The ``gymnasium`` module, or an ImportError naming the install command."""
    try:
        import gymnasium
    except ImportError as error:
        raise ImportError(
            'Gymnasium environments need gymnasium: pip install "es_toolkit[gym]"'
        ) from error
    return gymnasium


def env_spec(env_id: str):
    """Gymnasium's spec of ``env_id``; a ``module:`` prefix (Gymnasium's convention for
    envs registered by a module) imports that module first."""
    gym = import_gymnasium()
    module, _, name = env_id.rpartition(":")
    if module:
        importlib.import_module(module)
    return gym.spec(name)


def extra_for(env_id: str) -> str:
    """The es_toolkit extra that an env id needs (``gym`` for the classic ones)."""
    entry_point = str(env_spec(env_id).entry_point)
    return next((extra for word, extra in _EXTRAS.items() if word in entry_point), "gym")


def make_env(env_id: str, *, max_episode_steps: int | None = None, **kwargs: Any):
    """``gymnasium.make(env_id, ...)`` with its spaces checked.

    Raises ValueError for an id Gymnasium does not know or a space no policy handles (the
    error names the space), ImportError naming the ``pip install`` command when the
    simulator (MuJoCo, Box2D) is missing.
    """
    if not isinstance(env_id, str) or not env_id:
        raise TypeError(f"env_id must be a Gymnasium environment id string, got {env_id!r}.")
    gym = import_gymnasium()
    try:
        env_spec(env_id)
    except (gym.error.Error, ModuleNotFoundError) as error:
        raise ValueError(
            f"env_id {env_id!r} is not a registered Gymnasium environment: {error}"
        ) from None
    options = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    try:
        env = gym.make(env_id, **options, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        extra = extra_for(env_id)
        raise ImportError(
            f"{env_id} needs a simulator that is not installed: "
            f'pip install "es_toolkit[{extra}]" ({error})'
        ) from error
    try:
        check_spaces(env.observation_space, env.action_space)
    except ValueError as error:
        env.close()
        raise ValueError(f"{env_id}: {error}") from None
    return env


def check_spaces(observation_space: Any, action_space: Any) -> None:
    """A clear error unless the observation is a flat Box and the action Box or Discrete."""
    spaces.observation_shape(observation_space)
    spaces.action_head(action_space)
