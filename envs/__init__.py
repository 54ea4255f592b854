"""JAX-native environments, installed as ``es_toolkit.envs``.

Each environment is a port of a Gymnasium task with gymnax's functional shape:
``reset(key, env_params) -> (obs, state)`` and
``step(key, state, action, env_params) -> (obs, state, reward, terminated, truncated, info)``.
``make(env_id)`` returns one by its Gymnasium id; ``env.default_params`` holds its
configuration (change it with ``dataclasses.replace``). The contract is in ``base.py``:

>>> import jax
>>> from es_toolkit.envs import make
>>> env = make("CartPole-v1")
>>> params = env.default_params
>>> obs, state = env.reset(jax.random.key(0), params)
>>> obs, state, reward, terminated, truncated, info = env.step(
...     jax.random.key(1), state, env.action_space(params).sample(jax.random.key(2)), params
... )
>>> obs.shape, float(reward), bool(truncated)
((4,), 1.0, False)
"""

from collections.abc import Callable

from .acrobot import Acrobot
from .base import Environment
from .brax_envs import is_brax_id, make_brax
from .cartpole import CartPole
from .continuous_mountain_car import MountainCarContinuous
from .mountain_car import MountainCar
from .pendulum import Pendulum
from .spaces import Box, Discrete

__all__ = [
    "Acrobot",
    "Box",
    "CartPole",
    "Discrete",
    "Environment",
    "MountainCar",
    "MountainCarContinuous",
    "Pendulum",
    "make",
    "registered",
]

_REGISTRY: dict[str, Callable[[], Environment]] = {
    env.id: env for env in (CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum)
}


def registered() -> tuple[str, ...]:
    """The ids that ``make`` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def make(env_id: str) -> Environment:
    """Returns the JAX-native environment registered under ``env_id`` (a Gymnasium id), or
    Brax's env ``NAME`` for ``"brax/NAME"`` (needs ``pip install "es_toolkit[brax]"``)."""
    if is_brax_id(env_id):
        return make_brax(env_id)
    if env_id not in _REGISTRY:
        available = ", ".join(registered()) or "none yet"
        raise ValueError(
            f"env_id {env_id!r} is not a JAX-native environment; available: {available}."
        )
    return _REGISTRY[env_id]()
