"""Linear and MLP policies for flat observations and discrete or box action spaces.

A ``Policy`` is a NamedTuple of two pure functions: ``init(key) -> params`` (a pytree of
float32 arrays, what an evolution strategy optimizes) and ``apply(params, obs) -> action``
for a single observation (``jax.vmap`` it for a batch, or over a population of params).
Any such pair works with the rest of the toolkit, so a Flax or Equinox network wraps into a
``Policy`` in a few lines.

Networks produce raw outputs ``y``; the action head of ``spaces.py`` turns them into an
action: the argmax of ``n`` logits (an int32 scalar) for a discrete space, and
``low + (tanh(y) + 1) / 2 * (high - low)`` (float32, the action's shape) for a box, so a
zero output is the middle action; box dimensions unbounded on both sides take ``y`` as is.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit._validate import check_int
from es_toolkit.policies import spaces
from es_toolkit.policies._numpy import NUMPY_ACTIVATIONS, numpy_matmul
from es_toolkit.types import PRNGKey, PyTree


class Policy(NamedTuple):
    """``init(key) -> params`` and ``apply(params, obs) -> action``, both pure and jittable.

    ``numpy_apply(params, obs) -> action`` is the same forward pass in NumPy (params as
    NumPy arrays), for Gymnasium rollout workers where a JAX call per step would cost more
    than the step; ``None`` for policies that have none (they train on JAX envs only). It
    also takes a stack: params with a leading axis ``n`` and observations ``(n, d)`` give
    ``n`` actions, each the same numbers as that member alone (see ``numpy_matmul``).
    """

    init: Callable[[PRNGKey], PyTree]
    apply: Callable[[PyTree, jax.Array], jax.Array]
    numpy_apply: Callable[[PyTree, np.ndarray], Any] | None = None


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "swish": jax.nn.swish,
    "silu": jax.nn.silu,
}


def get_activation(name_or_fn: str | Callable[[jax.Array], jax.Array]):
    """An activation from its name in ``ACTIVATIONS`` or itself; a clear error otherwise."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name_or_fn!r}; choose one of "
            f"{', '.join(sorted(ACTIVATIONS))} or pass a function."
        )
    return ACTIVATIONS[name_or_fn]


def normc(key: PRNGKey, shape: tuple[int, int], scale: float) -> jax.Array:
    """Gaussian weights whose every column (a unit's incoming weights) has norm ``scale``.

    The initializer of OpenAI ES (Salimans et al., 2017): with standardized inputs each
    unit's pre-activation has standard deviation about ``scale``.
    """
    w = jax.random.normal(key, shape, jnp.float32)
    return w * (scale / jnp.sqrt(jnp.sum(w**2, axis=0, keepdims=True)))


def linear_policy(
    observation_space: Any,
    action_space: Any,
    *,
    zero_init: bool = True,
    bias: bool = True,
) -> Policy:
    """``y = obs @ w (+ b)`` followed by the action head: ARS's linear policy.

    Args:
        observation_space: a 1-D Box of ``d`` features.
        action_space: a discrete space (``n`` logits) or a box (``k`` outputs, its size).
        zero_init: start from all-zero weights (ARS, Mania et al. 2018), so the first
            policy takes the middle action of a box (action 0 of a discrete space);
            ``False`` draws ``w`` from N(0, 1/d).
        bias: add a bias vector ``b`` (initialized to zero); ``bias=False`` is exactly
            ARS's ``M @ obs``.

    Returns:
        A ``Policy`` whose params are ``{"w": (d, k)}`` plus ``{"b": (k,)}`` with a bias.
    """
    obs_shape = spaces.observation_shape(observation_space)
    head = spaces.action_head(action_space)
    shape = (obs_shape[0], head.size)

    def init(key: PRNGKey) -> PyTree:
        if zero_init:
            w = jnp.zeros(shape, jnp.float32)
        else:
            w = jax.random.normal(key, shape, jnp.float32) / jnp.sqrt(float(shape[0]))
        return {"w": w, "b": jnp.zeros(head.size, jnp.float32)} if bias else {"w": w}

    def forward(params: PyTree, x, matmul=jnp.matmul):
        y = matmul(x, params["w"])
        return y + params["b"] if bias else y

    def apply(params: PyTree, obs: jax.Array) -> jax.Array:
        return head.apply(forward(params, spaces.check_observation(obs, obs_shape)))

    def numpy_apply(params: PyTree, obs: np.ndarray):
        return head.numpy_apply(forward(params, np.asarray(obs, np.float32), numpy_matmul))

    return Policy(init, apply, numpy_apply)


def mlp_policy(
    observation_space: Any,
    action_space: Any,
    hidden_sizes: Sequence[int] = (32, 32),
    activation: str | Callable[[jax.Array], jax.Array] = "tanh",
    *,
    hidden_init_scale: float = 1.0,
    output_init_scale: float = 0.01,
) -> Policy:
    """A multi-layer perceptron followed by the action head.

    Args:
        observation_space: a 1-D Box of ``d`` features.
        action_space: a discrete space (``n`` logits) or a box (``k`` outputs, its size).
        hidden_sizes: widths of the hidden layers; ``()`` gives a linear map.
        activation: a name in ``ACTIVATIONS`` (tanh, relu, gelu, elu, swish, silu) or a
            function applied elementwise after each hidden layer.
        hidden_init_scale: column norm of the hidden layers' initial weights (``normc``).
        output_init_scale: column norm of the output layer's initial weights; small, so
            the initial policy is nearly the middle action and every output unit starts
            in tanh's linear range (OpenAI ES uses 0.01).

    Returns:
        A ``Policy`` whose params are a tuple of
        ``{"w": (fan_in, fan_out), "b": (fan_out,)}`` dicts, one per layer, biases
        initialized to zero.
    """
    obs_shape = spaces.observation_shape(observation_space)
    head = spaces.action_head(action_space)
    act = get_activation(activation)
    if isinstance(hidden_sizes, (int, str)) or not isinstance(hidden_sizes, Sequence):
        raise TypeError(
            f"hidden_sizes must be a sequence of ints like (32, 32), got {hidden_sizes!r}."
        )
    widths = [
        check_int(f"hidden_sizes[{i}]", size, minimum=1) for i, size in enumerate(hidden_sizes)
    ]
    sizes = [obs_shape[0], *widths, head.size]
    scales = [hidden_init_scale] * len(widths) + [output_init_scale]

    def init(key: PRNGKey) -> PyTree:
        keys = jax.random.split(key, len(scales))
        return tuple(
            {"w": normc(k, (fan_in, fan_out), scale), "b": jnp.zeros(fan_out, jnp.float32)}
            for k, fan_in, fan_out, scale in zip(keys, sizes[:-1], sizes[1:], scales, strict=True)
        )

    def forward(params: PyTree, x, act, matmul=jnp.matmul):
        *hidden, last = params
        for layer in hidden:
            x = act(matmul(x, layer["w"]) + layer["b"])
        return matmul(x, last["w"]) + last["b"]

    def apply(params: PyTree, obs: jax.Array) -> jax.Array:
        return head.apply(forward(params, spaces.check_observation(obs, obs_shape), act))

    def numpy_apply(params: PyTree, obs: np.ndarray):
        obs = np.asarray(obs, np.float32)
        return head.numpy_apply(forward(params, obs, numpy_act, numpy_matmul))

    numpy_act = NUMPY_ACTIVATIONS.get(activation) if isinstance(activation, str) else None
    return Policy(init, apply, numpy_apply if numpy_act else None)


POLICIES: dict[str, Callable[..., Policy]] = {"linear": linear_policy, "mlp": mlp_policy}


def make_policy(kind: str, observation_space: Any, action_space: Any, **options: Any) -> Policy:
    """The policy ``POLICIES[kind](observation_space, action_space, **options)``.

    Spaces are duck-typed: anything with ``.low``, ``.high`` and ``.shape`` is a box, and
    anything with an int ``.n`` is discrete.

    >>> import jax, numpy as np
    >>> from types import SimpleNamespace
    >>> obs_space = SimpleNamespace(low=np.full(3, -np.inf), high=np.full(3, np.inf), shape=(3,))
    >>> policy = make_policy("mlp", obs_space, SimpleNamespace(n=2), hidden_sizes=(8,))
    >>> params = policy.init(jax.random.key(0))
    >>> [layer["w"].shape for layer in params]
    [(3, 8), (8, 2)]
    >>> policy.apply(params, np.ones(3, np.float32)).dtype
    dtype('int32')
    """
    if not isinstance(kind, str) or kind not in POLICIES:
        raise ValueError(
            f"unknown policy kind {kind!r}; choose one of {', '.join(sorted(POLICIES))}."
        )
    return POLICIES[kind](observation_space, action_space, **options)
