"""Gaussian member noise with Threefry written out as elementwise ops: the numbers of
``jax.random`` (``fold_in``, ``split``, ``normal``), computed in one fusable expression.

Why: on CPU, JAX lowers each Threefry call to a while loop of 5 iterations, and a
direction's noise takes three dependent calls (member key, leaf keys, bits). For small
parameter vectors (d = 100, population 256) those loops, not the arithmetic, set the
cost of a generation. Written out, the 20 rounds are plain ``uint32`` adds, rotations and
xors that XLA fuses with the Gaussian conversion into one pass, whatever the backend.

The numbers are ``jax.random``'s bit for bit (tested) for its default PRNG, Threefry-2x32
with ``jax_threefry_partitionable`` (the default since JAX 0.5), float32 leaves and keys
made by ``jax.random.key``/``PRNGKey``; ``applies`` says when, and callers fall back to
``jax.random`` otherwise.
"""

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit.types import PRNGKey, PyTree

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
# jax.random.normal draws u uniform in [nextafter(-1, 0), 1) and returns sqrt(2) erfinv(u).
_LOW = np.nextafter(np.float32(-1), np.float32(0), dtype=np.float32)
_HIGH = np.float32(1)
_ONE_BITS = np.float32(1).view(np.uint32)


def threefry2x32(k1, k2, x1, x2) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds) of counters ``(x1, x2)`` under key ``(k1, k2)``,
    all ``uint32`` arrays that broadcast together, as JAX's ``threefry2x32`` computes it."""
    keys = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + keys[0], x2 + keys[1]
    for group in range(5):
        for rotation in _ROTATIONS[group % 2]:
            x1 = x1 + x2
            x2 = (x2 << np.uint32(rotation)) | (x2 >> np.uint32(32 - rotation))
            x2 = x1 ^ x2
        x1 = x1 + keys[(group + 1) % 3]
        x2 = x2 + keys[(group + 2) % 3] + np.uint32(group + 1)
    return x1, x2


def applies(key: PRNGKey, noise_is_normal: bool, like: PyTree) -> bool:
    """Whether ``normal_directions`` gives ``jax.random``'s numbers for this key and tree."""
    if not noise_is_normal or not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32" or key.shape != ():
            return False
    elif (
        key.shape != (2,)
        or key.dtype != jnp.uint32
        or (jax.config.jax_default_prng_impl != "threefry2x32")
    ):
        return False
    leaves = jax.tree.leaves(like)
    return all(jnp.result_type(leaf) == jnp.float32 and np.size(leaf) < 2**32 for leaf in leaves)


def normal_directions(key: PRNGKey, indices: jax.Array, like: PyTree) -> PyTree:
    """For each ``j`` in ``indices``: ``optax.tree.random_like(jax.random.fold_in(key, j),
    like, jax.random.normal)``, stacked on a leading axis (see ``applies``)."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    indices = jnp.asarray(indices).astype(jnp.uint32)
    zero = jnp.zeros_like(indices)
    member = threefry2x32(data[0], data[1], zero, indices)  # fold_in(key, j)
    leaves, treedef = jax.tree.flatten(like)
    counter = np.arange(len(leaves), dtype=np.uint32)
    # split(member key, number of leaves): leaf i's key is the hash of counter (0, i).
    leaf_keys = threefry2x32(member[0][:, None], member[1][:, None], np.uint32(0), counter)

    def draw():
        return [
            _normal(leaf_keys[0][:, i], leaf_keys[1][:, i], np.shape(leaf))
            for i, leaf in enumerate(leaves)
        ]

    # A conditional's result is a buffer: it keeps XLA from fusing the 20 rounds into each
    # consumer of the noise (members, weighted sums, ...) and computing them once per
    # consumer. The predicate is always true, but not a constant XLA can fold.
    always = (data[0] | np.uint32(1)) != np.uint32(0)
    draws = jax.lax.cond(
        always,
        draw,
        lambda: [jnp.zeros((indices.shape[0], *np.shape(leaf)), jnp.float32) for leaf in leaves],
    )
    return jax.tree.unflatten(treedef, draws)


def _normal(k1: jax.Array, k2: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.normal(key, shape, float32)`` for a batch of keys ``(k1, k2)``."""
    counter = np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
    expand = (slice(None), *([None] * len(shape)))
    high, low = threefry2x32(k1[expand], k2[expand], np.uint32(0), counter)
    bits = high ^ low
    floats = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | _ONE_BITS, jnp.float32)
    uniform = jnp.maximum(_LOW, (floats - np.float32(1)) * (_HIGH - _LOW) + _LOW)
    return np.float32(np.sqrt(2)) * jax.lax.erf_inv(uniform)
