"""CartPole-v1, ported from Gymnasium 1.4.0's ``classic_control/cartpole.py``.

The cart-pole of Barto, Sutton and Anderson (1983), "Neuronlike adaptive elements that can
solve difficult learning control problems", IEEE Trans. SMC 13(5), with the equations of
motion of Florian (2007), "Correct equations for the dynamics of the cart-pole system",
integrated by explicit Euler (Gymnasium's default) at ``tau = 0.02`` s.

As in Gymnasium: the action is 0 (push left) or 1 (push right); any action other than 1
pushes left. The reward is 1.0 every step, the terminating one included (with
``sutton_barto_reward=True``: 0.0, and -1.0 on termination). The episode terminates when
``|x| > 2.4`` or ``|theta| > 12°``, and is truncated after 500 steps. Reset draws all four
state variables uniformly from ``(-0.05, 0.05)``.

Unlike Gymnasium, stepping after termination keeps returning 1.0 (Gymnasium returns 0.0
there and warns: its steps after termination are undefined behavior).
"""

import math

import jax
import jax.numpy as jnp

from .base import Environment, pytree_dataclass, static_field
from .spaces import Box, Discrete


@pytree_dataclass
class CartPoleParams:
    """Gymnasium's constants; ``length`` is half the pole's length."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5
    force_mag: float = 10.0
    tau: float = 0.02
    theta_threshold_radians: float = 12 * 2 * math.pi / 360
    x_threshold: float = 2.4
    kinematics_integrator: str = static_field("euler")
    sutton_barto_reward: bool = static_field(False)
    max_steps_in_episode: int = 500


@pytree_dataclass
class CartPoleState:
    """Cart position and velocity, pole angle (0 is upright) and angular velocity."""

    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


def accelerations(
    state: CartPoleState, force: jax.Array, p: CartPoleParams
) -> tuple[jax.Array, jax.Array]:
    """``(xacc, thetaacc)`` under ``force``, as in Gymnasium (after Florian, 2007)."""
    total_mass = p.masspole + p.masscart
    polemass_length = p.masspole * p.length
    costheta, sintheta = jnp.cos(state.theta), jnp.sin(state.theta)
    temp = (force + polemass_length * jnp.square(state.theta_dot) * sintheta) / total_mass
    thetaacc = (p.gravity * sintheta - costheta * temp) / (
        p.length * (4.0 / 3.0 - p.masspole * jnp.square(costheta) / total_mass)
    )
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    return xacc, thetaacc


def integrate(
    state: CartPoleState, xacc: jax.Array, thetaacc: jax.Array, p: CartPoleParams
) -> CartPoleState:
    """One ``tau`` step by explicit Euler, or semi-implicit Euler if so configured."""
    x, x_dot, theta, theta_dot = state.x, state.x_dot, state.theta, state.theta_dot
    if p.kinematics_integrator == "euler":
        x = x + p.tau * x_dot
        x_dot = x_dot + p.tau * xacc
        theta = theta + p.tau * theta_dot
        theta_dot = theta_dot + p.tau * thetaacc
    else:  # semi-implicit Euler
        x_dot = x_dot + p.tau * xacc
        x = x + p.tau * x_dot
        theta_dot = theta_dot + p.tau * thetaacc
        theta = theta + p.tau * theta_dot
    return CartPoleState(x, x_dot, theta, theta_dot, state.time)


def is_terminal(state: CartPoleState, p: CartPoleParams) -> jax.Array:
    """The cart left ``[-x_threshold, x_threshold]`` or the pole passed 12 degrees."""
    return (
        (state.x < -p.x_threshold)
        | (state.x > p.x_threshold)
        | (state.theta < -p.theta_threshold_radians)
        | (state.theta > p.theta_threshold_radians)
    )


def get_obs(state: CartPoleState) -> jax.Array:
    """``[x, x_dot, theta, theta_dot]`` as float32."""
    return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(jnp.float32)


class CartPole(Environment):
    """Gymnasium's ``CartPole-v1`` as pure JAX functions; see the module docstring."""

    id = "CartPole-v1"

    @property
    def default_params(self) -> CartPoleParams:
        return CartPoleParams()

    def reset_env(
        self, key: jax.Array, env_params: CartPoleParams
    ) -> tuple[jax.Array, CartPoleState]:
        x, x_dot, theta, theta_dot = jax.random.uniform(key, (4,), jnp.float32, -0.05, 0.05)
        state = CartPoleState(x, x_dot, theta, theta_dot, jnp.zeros((), jnp.int32))
        return get_obs(state), state

    def step_env(
        self, key: jax.Array, state: CartPoleState, action: jax.Array, env_params: CartPoleParams
    ) -> tuple[jax.Array, CartPoleState, jax.Array, jax.Array]:
        p = env_params
        force = jnp.where(action == 1, p.force_mag, -p.force_mag)
        xacc, thetaacc = accelerations(state, force, p)
        state = integrate(state, xacc, thetaacc, p)
        terminated = is_terminal(state, p)
        if p.sutton_barto_reward:
            reward = jnp.where(terminated, -1.0, 0.0)
        else:
            reward = jnp.ones((), jnp.float32)
        return get_obs(state), state, reward, terminated

    def observation_space(self, env_params: CartPoleParams | None = None) -> Box:
        p = self.default_params if env_params is None else env_params
        high = [p.x_threshold * 2, math.inf, p.theta_threshold_radians * 2, math.inf]
        return Box([-h for h in high], high, (4,))

    def action_space(self, env_params: CartPoleParams | None = None) -> Discrete:
        return Discrete(2)
