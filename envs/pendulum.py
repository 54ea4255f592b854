"""Pendulum-v1, ported from Gymnasium 1.4.0's ``classic_control/pendulum.py``.

The inverted-pendulum swing-up: a rigid rod (point mass ``m`` at length ``l``) hinged at
one end, driven by a bounded torque, integrated by semi-implicit Euler at ``dt = 0.05`` s.

As in Gymnasium: the action is a float32 array of shape ``(1,)``, clipped to
``[-max_torque, max_torque] = [-2, 2]`` (the clipped torque enters both the dynamics and
the cost). The reward is ``-(angle_normalize(theta)**2 + 0.1 thdot**2 + 0.001 u**2)``,
computed from the state before the step; the angular velocity is clipped to 8. The task
never terminates; it is truncated after 200 steps. The observation is
``[cos theta, sin theta, thdot]`` (theta itself is not wrapped in the state). Reset draws
theta uniformly from ``(-pi, pi)`` and thdot from ``(-1, 1)``. Gravity defaults to
``g = 10.0``, Gymnasium's default (not 9.81).
"""

import math

import jax
import jax.numpy as jnp

from .base import Environment, pytree_dataclass
from .spaces import Box


@pytree_dataclass
class PendulumParams:
    """Gymnasium's constants."""

    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 (Gymnasium's name)
    max_steps_in_episode: int = 200


@pytree_dataclass
class PendulumState:
    """Angle (0 is upright, not wrapped) and angular velocity."""

    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


def angle_normalize(x: jax.Array) -> jax.Array:
    """``x`` wrapped into ``[-pi, pi)``, exactly as Gymnasium writes it."""
    return ((x + math.pi) % (2 * math.pi)) - math.pi


def get_obs(state: PendulumState) -> jax.Array:
    """``[cos theta, sin theta, thdot]`` as float32."""
    return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]).astype(
        jnp.float32
    )


class Pendulum(Environment):
    """Gymnasium's ``Pendulum-v1`` as pure JAX functions; see the module docstring."""

    id = "Pendulum-v1"

    @property
    def default_params(self) -> PendulumParams:
        return PendulumParams()

    def reset_env(
        self, key: jax.Array, env_params: PendulumParams
    ) -> tuple[jax.Array, PendulumState]:
        high = jnp.array([math.pi, 1.0], jnp.float32)
        theta, theta_dot = jax.random.uniform(key, (2,), jnp.float32, -high, high)
        state = PendulumState(theta, theta_dot, jnp.zeros((), jnp.int32))
        return get_obs(state), state

    def step_env(
        self, key: jax.Array, state: PendulumState, action: jax.Array, env_params: PendulumParams
    ) -> tuple[jax.Array, PendulumState, jax.Array, jax.Array]:
        p = env_params
        th, thdot = state.theta, state.theta_dot
        u = jnp.clip(action, -p.max_torque, p.max_torque)[0]
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        newthdot = thdot + (3 * p.g / (2 * p.l) * jnp.sin(th) + 3.0 / (p.m * p.l**2) * u) * p.dt
        newthdot = jnp.clip(newthdot, -p.max_speed, p.max_speed)
        newth = th + newthdot * p.dt
        state = PendulumState(newth, newthdot, state.time)
        return get_obs(state), state, -costs, jnp.zeros((), bool)

    def observation_space(self, env_params: PendulumParams | None = None) -> Box:
        p = self.default_params if env_params is None else env_params
        high = [1.0, 1.0, p.max_speed]
        return Box([-h for h in high], high, (3,))

    def action_space(self, env_params: PendulumParams | None = None) -> Box:
        p = self.default_params if env_params is None else env_params
        return Box(-p.max_torque, p.max_torque, (1,))
