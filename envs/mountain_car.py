"""MountainCar-v0, ported from Gymnasium 1.4.0's ``classic_control/mountain_car.py``.

An under-powered car in a valley must rock back and forth to reach the flag on the right
hill: Moore (1990), "Efficient memory-based learning for robot control", PhD thesis,
University of Cambridge; in the form of Sutton and Barto, "Reinforcement Learning: An
Introduction" (2018), example 10.1.

As in Gymnasium: action 0, 1, 2 accelerates left, not at all, right, through
``velocity += (action - 1) * force - gravity * cos(3 position)``; the velocity is clipped to
``0.07`` in magnitude, the position to ``[-1.2, 0.6]``, and hitting the left wall stops the
car. The reward is -1.0 every step; the episode terminates when ``position >= 0.5`` (and
``velocity >= goal_velocity``, 0 by default) and is truncated after 200 steps. Reset draws
the position uniformly from ``(-0.6, -0.4)`` with zero velocity.

An out-of-range action keeps Gymnasium's formula: action 3 pushes with twice the force.
"""

import jax
import jax.numpy as jnp

from .base import Environment, pytree_dataclass
from .spaces import Box, Discrete


@pytree_dataclass
class MountainCarParams:
    """Gymnasium's constants."""

    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025
    max_steps_in_episode: int = 200


@pytree_dataclass
class MountainCarState:
    """Position and velocity of the car (shared with MountainCarContinuous)."""

    position: jax.Array
    velocity: jax.Array
    time: jax.Array


def move(position: jax.Array, velocity: jax.Array, p) -> tuple[jax.Array, jax.Array]:
    """Clips the new ``velocity``, moves by it, clips the position and stops the car at
    the left wall, in Gymnasium's order (both mountain cars share this)."""
    velocity = jnp.clip(velocity, -p.max_speed, p.max_speed)
    position = jnp.clip(position + velocity, p.min_position, p.max_position)
    velocity = jnp.where((position == p.min_position) & (velocity < 0), 0.0, velocity)
    return position, velocity


def reached_goal(state: MountainCarState, p) -> jax.Array:
    """``position >= goal_position and velocity >= goal_velocity``."""
    return (state.position >= p.goal_position) & (state.velocity >= p.goal_velocity)


def reset_state(key: jax.Array) -> MountainCarState:
    """Position uniform in ``(-0.6, -0.4)``, velocity 0, time 0."""
    position = jax.random.uniform(key, (), jnp.float32, -0.6, -0.4)
    return MountainCarState(position, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))


def get_obs(state: MountainCarState) -> jax.Array:
    """``[position, velocity]`` as float32."""
    return jnp.stack([state.position, state.velocity]).astype(jnp.float32)


class MountainCar(Environment):
    """Gymnasium's ``MountainCar-v0`` as pure JAX functions; see the module docstring."""

    id = "MountainCar-v0"

    @property
    def default_params(self) -> MountainCarParams:
        return MountainCarParams()

    def reset_env(
        self, key: jax.Array, env_params: MountainCarParams
    ) -> tuple[jax.Array, MountainCarState]:
        state = reset_state(key)
        return get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: MountainCarState,
        action: jax.Array,
        env_params: MountainCarParams,
    ) -> tuple[jax.Array, MountainCarState, jax.Array, jax.Array]:
        p = env_params
        velocity = state.velocity + (
            (action - 1) * p.force + jnp.cos(3 * state.position) * (-p.gravity)
        )
        position, velocity = move(state.position, velocity, p)
        state = MountainCarState(position, velocity, state.time)
        terminated = reached_goal(state, p)
        return get_obs(state), state, jnp.full((), -1.0, jnp.float32), terminated

    def observation_space(self, env_params: MountainCarParams | None = None) -> Box:
        p = self.default_params if env_params is None else env_params
        return Box([p.min_position, -p.max_speed], [p.max_position, p.max_speed], (2,))

    def action_space(self, env_params: MountainCarParams | None = None) -> Discrete:
        return Discrete(3)
