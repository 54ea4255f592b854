"""MountainCarContinuous-v0, ported from Gymnasium 1.4.0's
``classic_control/continuous_mountain_car.py``.

The mountain car of ``mountain_car.py`` (Moore, 1990) with a continuous force: the action
is a float32 array of shape ``(1,)``. As in Gymnasium: the force is the action clipped to
``[-1, 1]``, ``velocity += force * power - 0.0025 cos(3 position)``, then the same clipping
and left wall as the discrete car. The episode terminates when ``position >= 0.45`` (and
``velocity >= goal_velocity``, 0 by default) and is truncated after 999 steps. The reward
is +100 on the terminating step minus ``0.1 * action[0]**2`` every step, where Gymnasium
uses the raw action, not the clipped force. Reset draws the position uniformly from
``(-0.6, -0.4)`` with zero velocity.
"""

import jax
import jax.numpy as jnp

from .base import Environment, pytree_dataclass
from .mountain_car import MountainCarState, get_obs, move, reached_goal, reset_state
from .spaces import Box


@pytree_dataclass
class MountainCarContinuousParams:
    """Gymnasium's constants (``gravity`` is a literal 0.0025 in its ``step``)."""

    min_action: float = -1.0
    max_action: float = 1.0
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.45
    goal_velocity: float = 0.0
    power: float = 0.0015
    gravity: float = 0.0025
    max_steps_in_episode: int = 999


class MountainCarContinuous(Environment):
    """Gymnasium's ``MountainCarContinuous-v0`` as pure JAX functions; see the module
    docstring. The state is ``mountain_car.MountainCarState``."""

    id = "MountainCarContinuous-v0"

    @property
    def default_params(self) -> MountainCarContinuousParams:
        return MountainCarContinuousParams()

    def reset_env(
        self, key: jax.Array, env_params: MountainCarContinuousParams
    ) -> tuple[jax.Array, MountainCarState]:
        state = reset_state(key)
        return get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: MountainCarState,
        action: jax.Array,
        env_params: MountainCarContinuousParams,
    ) -> tuple[jax.Array, MountainCarState, jax.Array, jax.Array]:
        p = env_params
        force = jnp.clip(action[0], p.min_action, p.max_action)
        velocity = state.velocity + force * p.power - p.gravity * jnp.cos(3 * state.position)
        position, velocity = move(state.position, velocity, p)
        state = MountainCarState(position, velocity, state.time)
        terminated = reached_goal(state, p)
        reward = jnp.where(terminated, 100.0, 0.0) - jnp.square(action[0]) * 0.1
        return get_obs(state), state, reward, terminated

    def observation_space(self, env_params: MountainCarContinuousParams | None = None) -> Box:
        p = self.default_params if env_params is None else env_params
        return Box([p.min_position, -p.max_speed], [p.max_position, p.max_speed], (2,))

    def action_space(self, env_params: MountainCarContinuousParams | None = None) -> Box:
        p = self.default_params if env_params is None else env_params
        return Box(p.min_action, p.max_action, (1,))
