"""Brax's physics environments behind this package's JAX environment contract.

``make("brax/ant")`` wraps ``brax.envs.get_environment("ant", backend="mjx")``: the raw
Brax env, without Brax's training wrappers, so the contract's rules apply as for the
classic-control ports. ``terminated`` is Brax's ``done`` (the raw env's ``done`` is only the
task's own end, e.g. the ant flipping over: Brax adds the time limit in a wrapper, which is
not used here); ``truncated`` is ``True`` once ``max_steps_in_episode`` steps are taken (1000
by default, the episode length Brax's trainers use). Like the other envs, ``step`` does not
reset automatically. Observations and actions are float32 boxes of Brax's
``observation_size`` and ``action_size``; actions lie in ``[-1, 1]`` (the actuators' control
range in Brax's models, where the physics clips them).

Brax is an optional dependency (``pip install "es_toolkit[brax]"``), imported when a Brax env
is made.
"""

import contextlib
import importlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from .base import Environment, pytree_dataclass
from .spaces import Box

PREFIX = "brax/"
DEFAULT_PIPELINE = "mjx"
DEFAULT_EPISODE_LENGTH = 1000
INSTALL_HINT = 'pip install "es_toolkit[brax]"'


@pytree_dataclass
class BraxParams:
    max_steps_in_episode: int = DEFAULT_EPISODE_LENGTH


@pytree_dataclass
class BraxState:
    brax_state: Any  # Brax's own ``brax.envs.State`` (physics state, obs, reward, done)
    time: jax.Array


@contextlib.contextmanager
def quiet_brax() -> Iterator[None]:
    """Silences the deprecation notices Brax, JAXopt and MJX give on import and while a step
    is traced: they concern those libraries' own maintenance, and a caller cannot act on them
    (under ``-W error`` they would stop every Brax env)."""
    with warnings.catch_warnings():
        for module in (r"brax(\.|$)", r"jaxopt(\.|$)", r"mujoco(\.|$)"):
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings(
            "ignore", message="Brax System, piplines and environments are not actively"
        )
        yield


def import_brax_envs() -> Any:
    """``brax.envs``, or an ``ImportError`` saying how to install it."""
    try:
        with quiet_brax():
            return importlib.import_module("brax.envs")
    except ImportError as error:
        raise ImportError(
            f"Brax environments need the brax package: {INSTALL_HINT} ({error})."
        ) from error


def brax_env_names() -> tuple[str, ...]:
    """The names Brax registers (``ant``, ``halfcheetah``, ...), sorted; needs brax."""
    return tuple(sorted(import_brax_envs()._envs))


class BraxEnv(Environment):
    """One Brax environment; see the module docstring.

    Args:
        name: a Brax env name, e.g. ``"ant"`` or ``"halfcheetah"`` (``brax_env_names()``).
        pipeline: Brax's physics backend, ``"mjx"`` by default; ``"generalized"``,
            ``"positional"`` or ``"spring"`` on request.
        **brax_kwargs: passed on to the Brax env's constructor (e.g. ``ctrl_cost_weight``).
    """

    def __init__(self, name: str, pipeline: str = DEFAULT_PIPELINE, **brax_kwargs: Any):
        brax_envs = import_brax_envs()
        if name not in brax_envs._envs:
            raise ValueError(
                f"name {name!r} is not a Brax environment; available: "
                f"{', '.join(sorted(brax_envs._envs))}."
            )
        with quiet_brax():
            self.brax_env = brax_envs.get_environment(name, backend=pipeline, **brax_kwargs)
            # Brax's ``observation_size`` runs a reset eagerly (over a minute for MJX on a
            # CPU); tracing one gives the shape in a second.
            reset_obs = jax.eval_shape(self.brax_env.reset, jax.random.key(0)).obs
        if not isinstance(reset_obs, jax.ShapeDtypeStruct) or len(reset_obs.shape) != 1:
            raise ValueError(
                f"name {name!r}: Brax env's observations are {reset_obs}; only flat "
                "observation vectors are supported."
            )
        size = reset_obs.shape[0]
        self.id = f"{PREFIX}{name}"
        self.pipeline = pipeline
        self._observation_space = Box(-math.inf, math.inf, shape=(size,))
        self._action_space = Box(-1.0, 1.0, shape=(self.brax_env.action_size,))

    @property
    def default_params(self) -> BraxParams:
        return BraxParams()

    def reset_env(self, key: jax.Array, env_params: BraxParams) -> tuple[jax.Array, BraxState]:
        with quiet_brax():
            brax_state = self.brax_env.reset(key)
        return brax_state.obs, BraxState(brax_state, jnp.zeros((), jnp.int32))

    def step_env(
        self, key: jax.Array, state: BraxState, action: jax.Array, env_params: BraxParams
    ) -> tuple[jax.Array, BraxState, jax.Array, jax.Array]:
        del key  # Brax's dynamics are deterministic
        with quiet_brax():
            brax_state = self.brax_env.step(state.brax_state, action)
        terminated = brax_state.done > 0.5
        return brax_state.obs, BraxState(brax_state, state.time), brax_state.reward, terminated

    def observation_space(self, env_params: Any = None) -> Box:
        return self._observation_space

    def action_space(self, env_params: Any = None) -> Box:
        return self._action_space

    def __repr__(self) -> str:
        return f"BraxEnv({self.id!r}, pipeline={self.pipeline!r})"


def is_brax_id(env_id: str) -> bool:
    """Whether ``env_id`` names a Brax env (``"brax/NAME"``); brax need not be installed."""
    return isinstance(env_id, str) and env_id.startswith(PREFIX) and len(env_id) > len(PREFIX)


def make_brax(env_id: str) -> BraxEnv:
    """The Brax env ``"brax/NAME"`` on the MJX pipeline (use ``BraxEnv`` for another)."""
    if not is_brax_id(env_id):
        raise ValueError(f"env_id must look like 'brax/NAME' (e.g. 'brax/ant'); got {env_id!r}.")
    return BraxEnv(env_id[len(PREFIX) :])
