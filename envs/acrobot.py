"""Acrobot-v1, ported from Gymnasium 1.4.0's ``classic_control/acrobot.py`` (after RLPy).

A two-link pendulum actuated at the joint between the links: Sutton (1996), "Generalization
in reinforcement learning: successful examples using sparse coarse coding", NeurIPS 8, with
the dynamics of Sutton and Barto's book (``book_or_nips="book"``, Gymnasium's default; the
NeurIPS paper's equations lack one term). One step integrates the equations of motion with
a single fourth-order Runge-Kutta step of ``dt = 0.2`` s, then wraps both angles into
``[-pi, pi]`` and clips the angular velocities to ``4 pi`` and ``9 pi``.

As in Gymnasium: actions 0, 1, 2 apply torque -1, 0, +1 (optionally plus uniform noise of
half-width ``torque_noise_max``, 0 by default; it is the only use of ``step``'s key). The
reward is -1.0 per step and 0.0 on the step that terminates, when the free end rises above
the target: ``-cos(theta1) - cos(theta1 + theta2) > 1``. Episodes are truncated after 500
steps. Reset draws all four state variables uniformly from ``(-0.1, 0.1)``.

Unlike Gymnasium, where ``AVAIL_TORQUE[a]`` raises for ``a >= 3``, an out-of-range action
here takes the nearest valid one (JAX clamps indices; -1 wraps to +1 torque as in Python).
"""

import math

import jax
import jax.numpy as jnp

from .base import Environment, pytree_dataclass, static_field
from .spaces import Box, Discrete


@pytree_dataclass
class AcrobotParams:
    """Gymnasium's constants (its class attributes ``LINK_MASS_1`` etc., lower-cased)."""

    dt: float = 0.2
    link_length_1: float = 1.0
    link_mass_1: float = 1.0
    link_mass_2: float = 1.0
    link_com_pos_1: float = 0.5
    link_com_pos_2: float = 0.5
    link_moi: float = 1.0
    gravity: float = 9.8
    max_vel_1: float = 4 * math.pi
    max_vel_2: float = 9 * math.pi
    torque_noise_max: float = 0.0
    avail_torque: tuple[float, ...] = static_field((-1.0, 0.0, 1.0))
    book_or_nips: str = static_field("book")
    max_steps_in_episode: int = 500


@pytree_dataclass
class AcrobotState:
    """Angle of link 1 (0 hangs down), angle of link 2 relative to link 1, velocities."""

    theta1: jax.Array
    theta2: jax.Array
    dtheta1: jax.Array
    dtheta2: jax.Array
    time: jax.Array


def dsdt(s: jax.Array, torque: jax.Array, p: AcrobotParams) -> jax.Array:
    """Time derivative of ``s = [theta1, theta2, dtheta1, dtheta2]`` (Gymnasium's ``_dsdt``)."""
    m1, m2, l1 = p.link_mass_1, p.link_mass_2, p.link_length_1
    lc1, lc2, i1, i2, g = p.link_com_pos_1, p.link_com_pos_2, p.link_moi, p.link_moi, p.gravity
    theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + i1 + i2
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + i2
    phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - math.pi / 2)
        + phi2
    )
    if p.book_or_nips == "nips":  # the NeurIPS paper's equation
        ddtheta2 = (torque + d2 / d1 * phi1 - phi2) / (m2 * lc2**2 + i2 - d2**2 / d1)
    else:  # the book's equation (and the Java implementation's)
        ddtheta2 = (
            torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2
        ) / (m2 * lc2**2 + i2 - d2**2 / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


def rk4(s: jax.Array, torque: jax.Array, p: AcrobotParams) -> jax.Array:
    """One classical Runge-Kutta step of length ``dt`` with the torque held constant."""
    dt, dt2 = p.dt, p.dt / 2.0
    k1 = dsdt(s, torque, p)
    k2 = dsdt(s + dt2 * k1, torque, p)
    k3 = dsdt(s + dt2 * k2, torque, p)
    k4 = dsdt(s + dt * k3, torque, p)
    return s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def wrap(x: jax.Array, m: float, big_m: float) -> jax.Array:
    """Wraps ``x`` into ``[m, big_m]`` by whole periods ``big_m - m``, like Gymnasium's
    loops ``while x > M: x -= diff`` then ``while x < m: x += diff``, in closed form."""
    diff = big_m - m
    x = jnp.where(x > big_m, x - diff * jnp.ceil((x - big_m) / diff), x)
    return jnp.where(x < m, x + diff * jnp.ceil((m - x) / diff), x)


def is_terminal(state: AcrobotState) -> jax.Array:
    """The free end is more than one link length above the pivot."""
    return -jnp.cos(state.theta1) - jnp.cos(state.theta2 + state.theta1) > 1.0


def get_obs(state: AcrobotState) -> jax.Array:
    """``[cos theta1, sin theta1, cos theta2, sin theta2, dtheta1, dtheta2]``."""
    return jnp.stack(
        [
            jnp.cos(state.theta1),
            jnp.sin(state.theta1),
            jnp.cos(state.theta2),
            jnp.sin(state.theta2),
            state.dtheta1,
            state.dtheta2,
        ]
    ).astype(jnp.float32)


class Acrobot(Environment):
    """Gymnasium's ``Acrobot-v1`` as pure JAX functions; see the module docstring."""

    id = "Acrobot-v1"

    @property
    def default_params(self) -> AcrobotParams:
        return AcrobotParams()

    def reset_env(
        self, key: jax.Array, env_params: AcrobotParams
    ) -> tuple[jax.Array, AcrobotState]:
        theta1, theta2, dtheta1, dtheta2 = jax.random.uniform(key, (4,), jnp.float32, -0.1, 0.1)
        state = AcrobotState(theta1, theta2, dtheta1, dtheta2, jnp.zeros((), jnp.int32))
        return get_obs(state), state

    def step_env(
        self, key: jax.Array, state: AcrobotState, action: jax.Array, env_params: AcrobotParams
    ) -> tuple[jax.Array, AcrobotState, jax.Array, jax.Array]:
        p = env_params
        torque = jnp.asarray(p.avail_torque, jnp.float32)[action]
        noise_max = p.torque_noise_max
        noise = jax.random.uniform(key, (), jnp.float32, -noise_max, noise_max)
        torque = jnp.where(noise_max > 0, torque + noise, torque)
        s = jnp.stack([state.theta1, state.theta2, state.dtheta1, state.dtheta2])
        ns = rk4(s, torque, p)
        state = AcrobotState(
            theta1=wrap(ns[0], -math.pi, math.pi),
            theta2=wrap(ns[1], -math.pi, math.pi),
            dtheta1=jnp.clip(ns[2], -p.max_vel_1, p.max_vel_1),
            dtheta2=jnp.clip(ns[3], -p.max_vel_2, p.max_vel_2),
            time=state.time,
        )
        terminated = is_terminal(state)
        reward = jnp.where(terminated, 0.0, -1.0)
        return get_obs(state), state, reward, terminated

    def observation_space(self, env_params: AcrobotParams | None = None) -> Box:
        p = self.default_params if env_params is None else env_params
        high = [1.0, 1.0, 1.0, 1.0, p.max_vel_1, p.max_vel_2]
        return Box([-h for h in high], high, (6,))

    def action_space(self, env_params: AcrobotParams | None = None) -> Discrete:
        p = self.default_params if env_params is None else env_params
        return Discrete(len(p.avail_torque))
