"""The contract every JAX-native environment follows, in gymnax's functional shape.

An environment object holds no state and no randomness; it is a namespace of pure
functions over two frozen-dataclass pytrees:

* env params (``env.default_params``): physics constants and ``max_steps_in_episode``.
  Numeric fields are pytree leaves (they may be traced, batched with ``vmap`` or changed
  with ``dataclasses.replace``); fields marked ``static_field`` (strings, flags that pick a
  code path) are pytree metadata, so changing them recompiles.
* state: the physical state as float32 scalars, plus ``time``, the int32 number of steps
  taken since ``reset``.

``reset(key, env_params) -> (obs, state)`` and
``step(key, state, action, env_params) -> (obs, state, reward, terminated, truncated, info)``
are jittable and vmappable (no Python control flow on traced values). ``terminated`` is
the task's own end (the pole fell, the goal was reached); ``truncated`` is the time limit,
computed exactly as Gymnasium's ``TimeLimit`` wrapper does: ``True`` once the step count
reaches ``max_steps_in_episode``, whatever ``terminated`` says. ``info`` is a dict (empty
for the classic-control ports).

``step`` does not reset automatically: after ``terminated | truncated`` it keeps
integrating the dynamics (Gymnasium calls such steps undefined behavior). A rollout masks
rewards after the first done, or calls ``reset`` itself.

``step`` checks the action's shape and dtype, which are static, when it is traced, and
raises ``ValueError``/``TypeError`` naming ``action`` and what was expected. Values are not
checked (they may be traced): a discrete action outside ``[0, n)`` gives that env's
documented fallback, and continuous actions are clipped only where Gymnasium clips them.
"""

import abc
import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from .spaces import Box, Discrete


def pytree_dataclass(cls: type) -> type:
    """Makes ``cls`` a frozen dataclass registered as a JAX pytree.

    Fields created with ``static_field`` become pytree metadata; all others are leaves.
    """
    return jax.tree_util.register_dataclass(dataclasses.dataclass(frozen=True)(cls))


def static_field(default: Any) -> Any:
    """A dataclass field that is pytree metadata: hashable, never traced."""
    return dataclasses.field(default=default, metadata={"static": True})


class Environment(abc.ABC):
    """Base class of the JAX-native environments; see the module docstring for the contract.

    Subclasses set ``id`` (the Gymnasium id) and implement ``default_params``,
    ``reset_env``, ``step_env``, ``observation_space`` and ``action_space``. Their state
    dataclass must have an int32 ``time`` field; ``step`` advances it and derives
    ``truncated`` from it.
    """

    id: ClassVar[str]

    @property
    @abc.abstractmethod
    def default_params(self) -> Any:
        """Gymnasium's defaults, including its registered ``max_episode_steps``."""

    @abc.abstractmethod
    def reset_env(self, key: jax.Array, env_params: Any) -> tuple[jax.Array, Any]:
        """Draws an initial state (``time`` 0) as Gymnasium's ``reset`` does."""

    @abc.abstractmethod
    def step_env(
        self, key: jax.Array, state: Any, action: jax.Array, env_params: Any
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
        """One transition of the unwrapped Gymnasium env: ``(obs, state, reward,
        terminated)``; the returned state's ``time`` is ignored (``step`` sets it)."""

    @abc.abstractmethod
    def observation_space(self, env_params: Any = None) -> Box:
        """The observation space for concrete (not traced) ``env_params``."""

    @abc.abstractmethod
    def action_space(self, env_params: Any = None) -> Box | Discrete:
        """The action space for concrete (not traced) ``env_params``."""

    def reset(self, key: jax.Array, env_params: Any = None) -> tuple[jax.Array, Any]:
        """Returns ``(obs, state)``; ``env_params`` defaults to ``default_params``."""
        if env_params is None:
            env_params = self.default_params
        return self.reset_env(key, env_params)

    def step(
        self, key: jax.Array, state: Any, action: Any, env_params: Any = None
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """Returns ``(obs, state, reward, terminated, truncated, info)``; no auto-reset."""
        if env_params is None:
            env_params = self.default_params
        action = self.check_action(action)
        obs, new_state, reward, terminated = self.step_env(key, state, action, env_params)
        time = jnp.asarray(state.time, jnp.int32) + 1
        new_state = dataclasses.replace(new_state, time=time)
        truncated = time >= env_params.max_steps_in_episode
        reward = jnp.asarray(reward, jnp.float32)
        return obs, new_state, reward, jnp.asarray(terminated, bool), truncated, {}

    def check_action(self, action: Any) -> jax.Array:
        """Returns ``action`` as an array after checking its static shape and dtype.

        Discrete spaces take an integer scalar of any integer dtype (cast to int32, or
        int64 in JAX's 64-bit mode); boxes take a float array of the box's shape (cast to
        the box's dtype, float32).
        """
        space = self.action_space(self.default_params)
        action = jnp.asarray(action)
        got = f"got shape {action.shape} and dtype {action.dtype}"
        if isinstance(space, Discrete):
            expected = f"an integer scalar (shape (), int32 or int64) in [0, {space.n})"
            if action.shape != ():
                raise ValueError(f"{self.id}: action must be {expected}; {got}.")
            if not jnp.issubdtype(action.dtype, jnp.integer):
                raise TypeError(f"{self.id}: action must be {expected}; {got}.")
            return action.astype(space.dtype)
        expected = f"a float array of shape {space.shape} (cast to {space.dtype})"
        if action.shape != space.shape:
            raise ValueError(f"{self.id}: action must be {expected}; {got}.")
        if not jnp.issubdtype(action.dtype, jnp.floating):
            raise TypeError(f"{self.id}: action must be {expected}; {got}.")
        return action.astype(space.dtype)

    @property
    def num_actions(self) -> int:
        """``n`` of a discrete action space, else the number of action coordinates."""
        space = self.action_space(self.default_params)
        if isinstance(space, Discrete):
            return space.n
        return math.prod(space.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"
