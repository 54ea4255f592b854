r"""ClipUp (Toklu et al., 2020): normalized gradient steps, heavy-ball momentum, clipped speed.

With the loss gradient :math:`g_t`, step size :math:`\alpha_t`, momentum :math:`m` and
maximum speed :math:`v_{\max}`:

.. math::
    v_t = \mathrm{clip}\Big(m\, v_{t-1} + \alpha_t \frac{g_t}{\lVert g_t \rVert}\Big),
    \qquad \mathrm{clip}(v) = v \min\Big(1, \frac{v_{\max}}{\lVert v \rVert}\Big),
    \qquad x_t = x_{t-1} - v_t,

norms taken over the whole pytree. The step length no longer depends on the gradient's
scale (which for ES estimates is set by the fitness scale and the population) and the
speed can never exceed :math:`v_{\max}`, so one pair of hyperparameters transfers across
problems. The paper recommends :math:`v_{\max} = 2\alpha` and :math:`m = 0.9`.

A zero gradient (e.g. constant fitness) contributes a zero step instead of ``0/0``, so the
velocity only decays by :math:`m`; from a fresh state the parameters do not move.

References:
    Toklu, Liskowski, Srivastava, "ClipUp: A Simple and Powerful Optimizer for
    Distribution-based Policy Evolution", PPSN 2020. https://arxiv.org/abs/2008.02387
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree

from es_toolkit._validate import check_positive_scalar
from es_toolkit.types import PyTree


class ClipUpState(NamedTuple):
    count: jax.Array  # int32 scalar: updates so far, drives the step-size schedule
    velocity: PyTree  # shaped like params, in gradient (loss) space


def clipup(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    max_speed: optax.ScalarOrSchedule | None = None,
) -> optax.GradientTransformation:
    """ClipUp as an optax optimizer (it minimizes, like every optax optimizer).

    Args:
        learning_rate: the step size :math:`\\alpha`, the length each normalized gradient
            adds to the velocity; a constant or an optax schedule of the update count.
        momentum: the velocity decay :math:`m`, in ``[0, 1)``.
        max_speed: the largest update norm :math:`v_{\\max}`; ``2 * learning_rate`` by
            default (as recommended by Toklu et al.), following its schedule.

    Returns:
        An ``optax.GradientTransformation`` whose state is a :class:`ClipUpState`.
    """
    if not callable(learning_rate):
        check_positive_scalar("learning_rate", learning_rate)
    if max_speed is not None and not callable(max_speed):
        check_positive_scalar("max_speed", max_speed)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}.")

    def schedule(value, count):
        return value(count) if callable(value) else value

    def init(params: PyTree) -> ClipUpState:
        return ClipUpState(jnp.zeros((), jnp.int32), optax.tree.zeros_like(params))

    def update(updates: PyTree, state: ClipUpState, params: PyTree = None):
        del params
        step = schedule(learning_rate, state.count)
        limit = 2.0 * step if max_speed is None else schedule(max_speed, state.count)
        grad_norm = optax.tree.norm(updates)
        scale = jnp.where(grad_norm > 0, step / jnp.where(grad_norm > 0, grad_norm, 1.0), 0.0)
        velocity = jax.tree.map(
            lambda v, g: (momentum * v + scale * g).astype(v.dtype), state.velocity, updates
        )
        speed = optax.tree.norm(velocity)
        shrink = jnp.where(speed > limit, limit / jnp.where(speed > 0, speed, 1.0), 1.0)
        velocity = jax.tree.map(lambda v: (shrink * v).astype(v.dtype), velocity)
        new_updates = jax.tree.map(lambda v, g: (-v).astype(g.dtype), velocity, updates)
        return new_updates, ClipUpState(optax.safe_increment(state.count), velocity)

    return optax.GradientTransformation(init, update)
