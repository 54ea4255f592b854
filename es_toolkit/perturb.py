r"""Perturbed (smoothed) functions and their derivatives from function values only.

``make_perturbed_fun`` is a drop-in for ``optax.perturbations.make_perturbed_fun`` (same
signature, defaults and numbers for the same key) with keyword-only extensions:
antithetic pairs, orthogonal directions and chunked evaluation in bounded memory.
``make_perturbed_value_and_grad`` is the first-order fast path that ES strategies share.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax.tree
from jax.ad_checkpoint import checkpoint_name

from es_toolkit import population_shard
from es_toolkit import sampling as sampling_lib
from es_toolkit._validate import check_array_output, check_float_tree, check_positive_scalar
from es_toolkit.noise import Gumbel
from es_toolkit.types import Noise, PRNGKey, PyTree

# Per-member outputs of ``fun`` up to this many scalars are kept as residuals when a chunk
# is differentiated, so the backward pass regenerates only the noise, never calls ``fun``.
_SAVED_OUTPUT_LIMIT = 1024
_OUTPUT_NAME = "es_toolkit_member_output"
_SAVE_OUTPUTS = jax.checkpoint_policies.save_only_these_names(_OUTPUT_NAME)


def make_perturbed_fun(
    fun: Callable[[PyTree], PyTree],
    num_samples: int = 1000,
    sigma: Any = 0.1,
    noise: Noise = Gumbel(),
    use_baseline: bool = True,
    *,
    antithetic: bool = False,
    orthogonal: bool = False,
    chunk_size: int | None = None,
    mesh: Any = None,
) -> Callable[[PRNGKey, PyTree], PyTree]:
    r"""Returns a differentiable approximation of a function, using stochastic perturbations.

    Let :math:`f` be a function, :math:`\sigma` a scalar, :math:`\mu` a noise distribution
    and

    .. math::
        f_\sigma(x) = \mathbb{E}_{z \sim \mu} f(x + \sigma z).

    The returned function ``fn(key, x)`` gives unbiased Monte-Carlo estimates of
    :math:`f_\sigma(x)` and, through JAX's automatic differentiation, of its derivatives of
    any order. Only values of :math:`f` are used: it is evaluated at perturbed inputs behind
    ``stop_gradient`` and never differentiated, so it may be non-differentiable. Derivatives
    flow through the score function, written with the DiCE "magic box"
    :math:`\boxdot(L) = \exp(L - \bot(L))` applied to the log-density :math:`L` of each
    sample:

    .. math::
        \hat f_\sigma(x) = \frac{1}{n} \sum_{i=1}^n \boxdot(L_i)\, f(x + \sigma z_i)
            + (1 - \boxdot(L_i))\, b,
        \qquad \nabla \hat f_\sigma(x) = \frac{1}{n} \sum_{i=1}^n (f(x + \sigma z_i) - b)
            \, \nabla_x L_i,

    where :math:`b = f(x)` when ``use_baseline`` and :math:`0` otherwise. With the
    extensions off, the numbers are those of ``optax.perturbations.make_perturbed_fun``:
    sample ``i`` uses ``jax.random.fold_in(key, i)``, which equals the
    ``jax.random.split(key, num_samples)[i]`` that optax uses.

    Args:
        fun: the function to smooth, from a pytree of float arrays to a pytree of arrays.
        num_samples: the number of perturbed evaluations averaged over.
        sigma: the scale of the perturbation, a positive scalar.
        noise: a distribution with ``sample`` and ``log_prob`` methods, like
            :class:`es_toolkit.noise.Gumbel` (the default) or
            :class:`es_toolkit.noise.Normal`; optax's noises work too.
        use_baseline: subtract :math:`f(x)` as a control variate (one extra evaluation).
        antithetic: draw mirrored pairs :math:`(z, -z)`; needs symmetric noise and an even
            ``num_samples``. The pair cancels the even part of :math:`f` around :math:`x`.
        orthogonal: make the Gaussian directions exactly orthogonal within blocks of
            :math:`\min(d, \text{num\_directions})`, keeping each marginally Gaussian
            (Choromanski et al., 2018); needs ``Normal`` noise. Costs a QR per block, so
            use it for :math:`d` up to about :math:`10^4`. Chunks then hold whole blocks:
            ``chunk_size`` is rounded down to a multiple of the block (at least one).
        chunk_size: evaluate this many samples at a time, regenerating each one's noise from
            its key, so that memory is O(chunk_size * d) instead of O(num_samples * d),
            also under ``jax.grad`` and ``jax.hessian``. ``None`` evaluates all at once.
        mesh: shard the samples over devices: a device count, a sequence of devices or a
            1-D ``Mesh`` with axis ``"pop"``. Each device draws and evaluates its own block
            of samples; only d-sized sums cross devices, and the numbers equal the
            unsharded ones up to float rounding. ``num_samples`` (pairs, with
            ``antithetic``) must divide by the device count. ``None``: no sharding.

    Returns:
        ``fn(key, x)`` with the output structure of ``fun(x)``.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from es_toolkit import make_perturbed_fun
        >>> key = jax.random.key(0)
        >>> x = jnp.array([0.0, 0.0, 0.0])
        >>> f = lambda x: jnp.sum(jnp.maximum(x, 0.0))
        >>> fn = make_perturbed_fun(f, 1_000, 0.1)
        >>> with jnp.printoptions(precision=2):
        ...     print(jax.grad(fn, argnums=1)(key, x))
        [0.69 0.72 0.58]

    References:
        Berthet et al., `Learning with Differentiable Perturbed Optimizers
        <https://arxiv.org/abs/2002.08676>`_, 2020.

        Foerster et al., `DiCE: The Infinitely Differentiable Monte Carlo Estimator
        <https://arxiv.org/abs/1802.05098>`_, 2018.

        Salimans et al., `Evolution Strategies as a Scalable Alternative to Reinforcement
        Learning <https://arxiv.org/abs/1703.03864>`_, 2017.

        Choromanski et al., `Structured Evolution with Compact Architectures for Scalable
        Policy Optimization <https://arxiv.org/abs/1804.02395>`_, 2018.
    """
    sampling = _make_sampling(num_samples, sigma, noise, antithetic, orthogonal, chunk_size)

    def perturbed(key: PRNGKey, x: PyTree) -> PyTree:
        x = check_float_tree("x", x)
        out_shape = check_array_output("fun", fun, x)
        sharded = population_shard.current() is not None
        if (sampling.chunk_size is not None or sharded) and _is_scalar(out_shape):
            return chunked_scalar(key, x)
        baseline = fun(jax.lax.stop_gradient(x)) if use_baseline else None

        def member_outputs(start, count):
            members = sampling_lib.sample_members(sampling, key, start, count, x)
            return jax.vmap(lambda z: _dice_estimate(fun, noise, sigma, x, z, baseline))(members)

        if sampling.chunk_size is None and population_shard.current() is None:
            outputs = member_outputs(0, sampling_lib.num_directions(sampling))
            return jax.tree.map(lambda leaf: jnp.mean(leaf, axis=0), outputs)

        def chunk_sum(start, count):
            return jax.tree.map(lambda leaf: jnp.sum(leaf, axis=0), member_outputs(start, count))

        small_output = sampling_lib.flat_size(out_shape) <= _SAVED_OUTPUT_LIMIT
        policy = _SAVE_OUTPUTS if small_output else None
        total = sampling_lib.sweep(sampling, x, chunk_sum, policy=policy)
        return jax.tree.map(lambda leaf: leaf / num_samples, total)

    # Scalar ``fun``, chunked: the value alone needs no score; its derivative comes from a
    # rule that computes value and gradient in one sweep (the fast path's cost), written
    # with the magic box so that the rule itself differentiates into the higher-order
    # DiCE estimators.
    @jax.custom_jvp
    def chunked_scalar(key, x):
        return _sweep_estimates(fun, sampling, sigma, noise, key, x, None, gradient=False)

    @chunked_scalar.defjvp
    def chunked_scalar_jvp(primals, tangents):
        key, x = primals
        baseline = fun(jax.lax.stop_gradient(x)) if use_baseline else None
        value, grad = _sweep_estimates(fun, sampling, sigma, noise, key, x, baseline, dice=True)
        return value, _tree_vdot(grad, tangents[1])

    return _on_mesh(perturbed, mesh)


def make_perturbed_value_and_grad(
    fun: Callable[[PyTree], jax.Array],
    num_samples: int = 1000,
    sigma: Any = 0.1,
    noise: Noise = Gumbel(),
    use_baseline: bool = True,
    *,
    antithetic: bool = False,
    orthogonal: bool = False,
    chunk_size: int | None = None,
    mesh: Any = None,
) -> Callable[[PRNGKey, PyTree], tuple[jax.Array, PyTree]]:
    r"""Returns ``fn(key, x) -> (value, grad)``: the first-order fast path.

    Computes, in a single pass over the population, the same numbers as
    ``jax.value_and_grad`` of :func:`make_perturbed_fun` with the same arguments, for a
    scalar-valued ``fun``:

    .. math::
        \hat f_\sigma(x) = \frac{1}{n} \sum_i f(x + \sigma z_i), \qquad
        \hat g = \frac{1}{n} \sum_i (f(x + \sigma z_i) - b)\, \nabla_x L_i,

    with :math:`\nabla_x L_i = -\nabla \log \mu(z_i) / \sigma` (:math:`z_i / \sigma` for
    Gaussian noise). It builds no graph for higher derivatives, keeps nothing per sample
    beyond one chunk, and never differentiates ``fun``.

    Args:
        fun: a function from a pytree of float arrays to a scalar.
        num_samples, sigma, noise, use_baseline, antithetic, orthogonal, chunk_size, mesh:
            as in :func:`make_perturbed_fun`.

    Returns:
        ``fn(key, x)`` returning the estimate of :math:`f_\sigma(x)` and of its gradient,
        a pytree shaped like ``x``.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from es_toolkit import make_perturbed_value_and_grad, noise
        >>> f = lambda x: jnp.sum(x**2)
        >>> fn = make_perturbed_value_and_grad(
        ...     f, 1000, 0.1, noise.Normal(), antithetic=True, chunk_size=100
        ... )
        >>> value, grad = fn(jax.random.key(0), jnp.array([1.0, -2.0]))
        >>> with jnp.printoptions(precision=1):
        ...     print(grad)  # the exact gradient of the smoothed sphere is 2x = [2, -4]
        [ 1.8 -4.2]
    """
    sampling = _make_sampling(num_samples, sigma, noise, antithetic, orthogonal, chunk_size)

    def value_and_grad(key: PRNGKey, x: PyTree) -> tuple[jax.Array, PyTree]:
        x = check_float_tree("x", x)
        out_shape = check_array_output("fun", fun, x)
        if jax.tree.structure(out_shape).num_leaves != 1 or out_shape.shape != ():
            raise TypeError(
                "fun must return a scalar for make_perturbed_value_and_grad, got "
                f"{jax.tree.map(lambda leaf: leaf.shape, out_shape)}; use jax.jacrev of "
                "make_perturbed_fun for other outputs."
            )
        baseline = fun(x) if use_baseline else None
        return _sweep_estimates(fun, sampling, sigma, noise, key, x, baseline)

    return _on_mesh(value_and_grad, mesh)


def _on_mesh(fn, mesh):
    """``fn`` with its samples sharded over ``mesh`` (see ``es_toolkit.parallel``)."""
    if mesh is None:
        return fn
    from es_toolkit import parallel  # parallel builds on this module: import on demand

    return parallel.shard(fn, mesh)


def _make_sampling(num_samples, sigma, noise, antithetic, orthogonal, chunk_size):
    check_positive_scalar("sigma", sigma)
    return sampling_lib.make_sampling(
        num_samples,
        noise,
        antithetic=antithetic,
        orthogonal=orthogonal,
        chunk_size=chunk_size,
        size_name="num_samples",
    )


def _dice_estimate(fun, noise, sigma, x, z, baseline):
    """One sample's DiCE estimate, written exactly as optax writes it."""
    shifted = jax.lax.stop_gradient(jax.tree.map(lambda leaf, zi: leaf + sigma * zi, x, z))
    z = jax.tree.map(lambda leaf, y: (y - leaf) / sigma, x, shifted)
    log_prob = optax.tree.sum(jax.tree.map(noise.log_prob, z))
    box = jnp.exp(log_prob - jax.lax.stop_gradient(log_prob))
    value = checkpoint_name(fun(shifted), _OUTPUT_NAME)
    out = optax.tree.scale(box, value)
    if baseline is not None:
        out = optax.tree.add_scale(out, 1 - box, baseline)
    return out


def _sweep_estimates(fun, sampling, sigma, noise, key, x, baseline, *, gradient=True, dice=False):
    """Value (and gradient) estimates of a scalar ``fun`` in one chunked sweep.

    With ``dice`` each member's terms carry the magic box ``exp(L - stop_gradient(L))``
    (numerically 1), so that differentiating the result gives the DiCE estimators of the
    next order; without it the same numbers come out with less work.
    """
    n = sampling.population_size

    def chunk_sum(start, count):
        members = sampling_lib.sample_members(sampling, key, start, count, x)
        shifted = jax.lax.stop_gradient(jax.tree.map(lambda p, m: p + sigma * m, x, members))
        values = checkpoint_name(jax.vmap(fun)(shifted), _OUTPUT_NAME)
        if not gradient:
            return jnp.sum(values)
        z = jax.tree.map(lambda p, y: (y - p) / sigma, x, shifted)
        weights = values if baseline is None else values - baseline
        total = jnp.sum(values)
        if dice:
            log_prob = jax.vmap(lambda zi: optax.tree.sum(jax.tree.map(noise.log_prob, zi)))(z)
            box = jnp.exp(log_prob - jax.lax.stop_gradient(log_prob))
            weights = box * weights
            total = jnp.sum(
                box * values if baseline is None else box * values + (1 - box) * baseline
            )
        grad = jax.tree.map(lambda zi: jnp.tensordot(weights, _score(noise, zi, sigma), axes=1), z)
        return total, grad

    totals = sampling_lib.sweep(sampling, x, chunk_sum, policy=_SAVE_OUTPUTS)
    return jax.tree.map(lambda t: t / n, totals)


def _is_scalar(shape_tree) -> bool:
    leaves = jax.tree.leaves(shape_tree)
    return len(leaves) == 1 and leaves[0].shape == ()


def _tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _score(noise, z, sigma):
    """Elementwise gradient of the log-density of the sample with respect to ``x``."""
    return -jax.grad(lambda u: jnp.sum(noise.log_prob(u)))(z) / sigma
