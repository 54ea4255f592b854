"""How a population of perturbations is drawn and swept, in bounded memory.

Every estimator in es_toolkit sees the population through this module. The rules:

* **Member keys.** Direction ``j`` draws its noise from ``jax.random.fold_in(key, j)``,
  which equals ``jax.random.split(key, n)[j]`` (what optax uses), so any slice of the
  population can be regenerated on demand, on any device, without storing or sending it.
* **Antithetic pairs.** With ``antithetic=True`` direction ``j`` gives the two members
  ``2j`` (``+z_j``) and ``2j + 1`` (``-z_j``), adjacent so that a chunk holds whole pairs.
* **Orthogonal directions** (Choromanski et al., 2018). Within each block of
  ``min(d, num_directions)`` consecutive directions, the Gaussian draws are made exactly
  orthogonal while keeping their lengths, so each one is still marginally ``N(0, I)``.
* **Chunks.** ``sweep`` visits the directions ``chunk`` at a time inside a ``lax.scan`` whose
  body is rematerialized under differentiation, so neither the noise nor ``fun``'s
  intermediates are ever held for the whole population.
* **Memory budget.** With no ``chunk_size``, a ``Sampling`` that has a ``memory_budget``
  chunks on its own once the population's noise would exceed it (:func:`auto_chunk_size`):
  small problems run whole, large ones in the largest chunks that fit.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree

from es_toolkit import noise as noise_lib
from es_toolkit import population_shard, threefry
from es_toolkit._validate import check_int, check_optional_int
from es_toolkit.types import Noise, PRNGKey, PyTree

DEFAULT_MEMORY_BUDGET = 256 * 2**20
"""Bytes of member noise that strategies and ``minimize`` hold at once by default."""


class Sampling(NamedTuple):
    """Static description of a population of perturbations (hashable, no arrays)."""

    population_size: int
    noise: Noise
    antithetic: bool = False
    orthogonal: bool = False
    chunk_size: int | None = None
    memory_budget: int | None = None  # bytes; chunks when chunk_size is None (None: never)


def make_sampling(
    population_size: int,
    noise: Noise,
    *,
    antithetic: bool = False,
    orthogonal: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    size_name: str = "population_size",
) -> Sampling:
    """Validates the options and returns a ``Sampling``.

    ``memory_budget`` (bytes) lets a ``Sampling`` without ``chunk_size`` pick its chunk
    (see :func:`auto_chunk_size`); ``None`` holds the whole population. ``size_name`` is
    the name the caller's user knows the population size by (``num_samples`` for
    ``make_perturbed_fun``), so errors speak their language.
    """
    population_size = check_int(size_name, population_size, minimum=1)
    chunk_size = check_optional_int("chunk_size", chunk_size, minimum=1)
    memory_budget = check_optional_int("memory_budget", memory_budget, minimum=1)
    noise_lib.check_noise(noise)
    for name, flag in (("antithetic", antithetic), ("orthogonal", orthogonal)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}.")
    if antithetic:
        if not noise_lib.is_symmetric(noise):
            raise ValueError(
                f"antithetic=True needs a symmetric noise (z and -z equally likely), "
                f"such as Normal(); {noise!r} is not symmetric."
            )
        if population_size % 2:
            raise ValueError(
                f"antithetic=True draws mirrored pairs, so {size_name} must be even, "
                f"got {population_size}."
            )
        if chunk_size is not None and chunk_size % 2:
            raise ValueError(
                f"antithetic=True keeps mirrored pairs in one chunk, so chunk_size must be "
                f"even, got {chunk_size}."
            )
    if orthogonal and not noise_lib.is_gaussian(noise):
        raise ValueError(
            f"orthogonal=True needs Gaussian noise (Normal()), got {noise!r}: only for "
            "isotropic noise do orthogonalized draws keep the law of each member."
        )
    return Sampling(population_size, noise, antithetic, orthogonal, chunk_size, memory_budget)


def members_per_direction(sampling: Sampling) -> int:
    return 2 if sampling.antithetic else 1


def num_directions(sampling: Sampling) -> int:
    return sampling.population_size // members_per_direction(sampling)


def own_directions(sampling: Sampling) -> tuple[Any, int]:
    """``(first, count)`` of the directions this device owns: all of them, or inside
    ``parallel.shard`` its block (see ``population_shard``)."""
    what = "antithetic pairs" if sampling.antithetic else "samples"
    return population_shard.own_range(num_directions(sampling), what)


def flat_size(tree: PyTree) -> int:
    """Total number of scalars in a pytree of arrays."""
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def tree_bytes(tree: PyTree) -> int:
    """Bytes of one copy of a pytree of arrays (or of shape-dtype structs)."""
    return sum(
        math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree)
    )


def auto_chunk_size(
    population_size: int, like: PyTree, memory_budget: int | None, unit: int = 1
) -> int | None:
    """Members to hold at once so that their noise fits ``memory_budget`` bytes.

    ``None`` (the whole population) when all of it fits or there is no budget; otherwise
    the population is split into the fewest chunks that fit, of (nearly) equal size, each
    a multiple of ``unit`` members (whole antithetic pairs and orthogonal blocks) and at
    least one ``unit``, whatever the budget.
    """
    member_bytes = max(tree_bytes(like), 1)
    if memory_budget is None or population_size * member_bytes <= memory_budget:
        return None
    largest = max(unit, memory_budget // member_bytes // unit * unit)
    num_chunks = -(-population_size // largest)
    balanced = -(-population_size // num_chunks)
    return -(-balanced // unit) * unit


def orthogonal_block(sampling: Sampling, like: PyTree) -> int:
    """Number of consecutive directions made mutually orthogonal (1 when disabled)."""
    if not sampling.orthogonal:
        return 1
    return min(flat_size(like), num_directions(sampling))


def chunk_directions(sampling: Sampling, like: PyTree) -> int:
    """Directions per chunk: ``chunk_size``'s, else what fits ``memory_budget``, else all.

    With orthogonal directions a chunk holds whole blocks: the requested size is rounded
    down to a multiple of the block, and to at least one block.
    """
    total = num_directions(sampling)
    per = members_per_direction(sampling)
    block = orthogonal_block(sampling, like)
    chunk_size = sampling.chunk_size
    if chunk_size is None:
        chunk_size = auto_chunk_size(
            sampling.population_size, like, sampling.memory_budget, per * block
        )
    if chunk_size is None:
        return total
    chunk = chunk_size // per
    return min(max(block, chunk - chunk % block), total)


def sample_directions(
    sampling: Sampling, key: PRNGKey, start: Any, count: int, like: PyTree
) -> PyTree:
    """Noise of directions ``start, ..., start + count - 1``, leading axis ``count``.

    ``start`` may be traced; it must be a multiple of the orthogonal block size.
    """
    indices = start + jnp.arange(count)
    if threefry.applies(key, noise_lib.is_plain_normal(sampling.noise), like):
        draws = threefry.normal_directions(key, indices, like)
    else:
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
        draws = jax.vmap(lambda k: optax.tree.random_like(k, like, sampling.noise.sample))(keys)
    if sampling.orthogonal:
        draws = _orthogonalize_tree(draws, orthogonal_block(sampling, like))
    return draws


def to_members(sampling: Sampling, directions: PyTree) -> PyTree:
    """Member noise from direction noise: ``(+z_0, -z_0, +z_1, ...)`` when antithetic."""
    if not sampling.antithetic:
        return directions

    def mirror(z):
        return jnp.stack([z, -z], axis=1).reshape((2 * z.shape[0], *z.shape[1:]))

    return jax.tree.map(mirror, directions)


def sample_members(
    sampling: Sampling, key: PRNGKey, start: Any, count: int, like: PyTree
) -> PyTree:
    """Noise of the members of directions ``start .. start + count - 1``."""
    return to_members(sampling, sample_directions(sampling, key, start, count, like))


def sweep(
    sampling: Sampling,
    like: PyTree,
    chunk_sum: Callable[[Any, int], PyTree],
    *,
    policy: Callable[..., bool] | None = None,
) -> PyTree:
    """Returns the sum of ``chunk_sum(start, count)`` over chunks of directions.

    ``chunk_sum(start, count)`` must return a pytree summed over the members of directions
    ``start .. start + count - 1``. Full chunks run in a ``lax.scan`` whose body is
    rematerialized under differentiation (``policy`` may keep cheap residuals such as
    ``fun``'s outputs), so memory is O(chunk * d) for values and derivatives alike.

    Inside ``parallel.shard`` each device sweeps only its own block of directions and the
    partial sums are added over devices (``psum``): only the d-sized sum crosses devices.
    """
    first, total = own_directions(sampling)
    chunk = min(chunk_directions(sampling, like), total)
    block = orthogonal_block(sampling, like)
    if (total % block or chunk % block) and population_shard.current() is not None:
        raise ValueError(
            f"orthogonal blocks of {block} directions would straddle devices: each device "
            f"holds {total} directions; use a population whose directions per device are a "
            f"multiple of {block}."
        )
    if chunk >= total:
        return population_shard.psum(chunk_sum(first, total))
    num_full, rest = divmod(total, chunk)
    body = jax.checkpoint(lambda start: chunk_sum(start, chunk), policy=policy, prevent_cse=False)

    def step(acc, index):
        return optax.tree.add(acc, body(first + index * chunk)), None

    init = optax.tree.zeros_like(jax.eval_shape(lambda start: chunk_sum(start, chunk), 0))
    acc, _ = jax.lax.scan(step, population_shard.varying(init), jnp.arange(num_full))
    if rest:
        acc = optax.tree.add(acc, chunk_sum(first + num_full * chunk, rest))
    return population_shard.psum(acc)


def _orthogonalize_tree(draws: PyTree, block: int) -> PyTree:
    leaves, treedef = jax.tree.flatten(draws)
    count = leaves[0].shape[0]
    flat = jnp.concatenate([leaf.reshape(count, -1) for leaf in leaves], axis=1)
    num_full, rest = divmod(count, block)
    parts = []
    if num_full:
        full = flat[: num_full * block].reshape(num_full, block, -1)
        parts.append(_orthogonalize_blocks(full).reshape(num_full * block, -1))
    if rest:
        parts.append(_orthogonalize_blocks(flat[num_full * block :][None])[0])
    flat = jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    out, offset = [], 0
    for leaf in leaves:
        size = leaf[0].size
        out.append(flat[:, offset : offset + size].reshape(leaf.shape).astype(leaf.dtype))
        offset += size
    return jax.tree.unflatten(treedef, out)


def _orthogonalize_blocks(gaussian: jax.Array) -> jax.Array:
    """Rows of each ``(m, D)`` block made orthogonal, keeping each row's length.

    Gram-Schmidt (QR with a positive diagonal) of i.i.d. Gaussian rows gives a Haar
    orthonormal frame independent of the row lengths, which stay chi-distributed: each
    output row is therefore still exactly ``N(0, I)`` (Choromanski et al., 2018).
    """
    q, r = jnp.linalg.qr(jnp.swapaxes(gaussian, -1, -2))
    signs = jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))
    frame = jnp.swapaxes(q, -1, -2) * signs[..., None]
    return frame * jnp.linalg.norm(gaussian, axis=-1, keepdims=True)


def weighted_sum(
    sampling: Sampling,
    key: PRNGKey,
    like: PyTree,
    weights: jax.Array,
    *,
    squared: bool = False,
    directions: PyTree | None = None,
) -> PyTree:
    """Sum over members of ``weights[i] * z_i`` (or ``weights[i] * (z_i**2 - 1)``), chunked.

    This is the update step shared by the ES strategies: it regenerates every member's
    noise from its key, so the population is never stored. With antithetic pairs the two
    members of a direction are folded first (``z`` is odd, ``z**2 - 1`` even in ``z``),
    which halves the work. ``directions``: see :func:`weighted_sums`.
    """
    if squared:
        return weighted_sums(sampling, key, like, None, weights, directions=directions)[1]
    return weighted_sums(sampling, key, like, weights, None, directions=directions)[0]


def weighted_sums(
    sampling: Sampling,
    key: PRNGKey,
    like: PyTree,
    weights: jax.Array | None,
    squared_weights: jax.Array | None,
    *,
    directions: PyTree | None = None,
) -> tuple[PyTree | None, PyTree | None]:
    """``(sum_i weights[i] z_i, sum_i squared_weights[i] (z_i**2 - 1))`` in one pass.

    Strategies that adapt sigma (PGPE, SNES) need both; sharing the pass generates the
    noise once. Either weight vector may be ``None`` to skip its sum.

    ``directions``, when given, is the noise of every direction as
    ``sample_directions(sampling, key, 0, num_directions(sampling), like)`` returns it
    (already drawn, e.g. to build the members): it is used instead of regenerating the
    noise from ``key``, in one unchunked pass, with the same result.
    """
    folded = (
        None if weights is None else _fold_pairs(sampling, weights, odd=True),
        None if squared_weights is None else _fold_pairs(sampling, squared_weights, odd=False),
    )

    def contract(w, z, start, count):
        w = jax.lax.dynamic_slice_in_dim(w, start, count)
        return jax.tree.map(lambda leaf: jnp.tensordot(w, leaf, axes=1), z)

    def sums(z, start, count):
        linear, square = folded
        return (
            None if linear is None else contract(linear, z, start, count),
            None
            if square is None
            else contract(square, jax.tree.map(lambda leaf: leaf**2 - 1, z), start, count),
        )

    if directions is not None:
        first, count = own_directions(sampling)
        check_directions(sampling, like, directions, count)
        return population_shard.psum(sums(directions, first, count))
    return sweep(
        sampling,
        like,
        lambda start, count: sums(
            sample_directions(sampling, key, start, count, like), start, count
        ),
    )


def check_directions(
    sampling: Sampling, like: PyTree, directions: PyTree, count: int | None = None
) -> None:
    """Raises unless ``directions`` is shaped like the noise of ``count`` directions (the
    whole population by default)."""
    count = num_directions(sampling) if count is None else count
    expected = [((count, *jnp.shape(p)), jnp.result_type(p)) for p in jax.tree.leaves(like)]
    got = [(jnp.shape(z), jnp.result_type(z)) for z in jax.tree.leaves(directions)]
    if jax.tree.structure(directions) != jax.tree.structure(like) or got != expected:
        raise ValueError(
            "directions must hold the noise of every direction, shaped like params with a "
            f"leading axis of {count} (num_directions); got {got}, expected {expected}."
        )


def _fold_pairs(sampling: Sampling, weights: jax.Array, *, odd: bool) -> jax.Array:
    """Per-direction weights: a mirrored pair contributes ``(w+ - w-) z`` for a function
    odd in ``z`` and ``(w+ + w-) g(z)`` for an even one."""
    if not sampling.antithetic:
        return weights
    plus, minus = weights[0::2], weights[1::2]
    return plus - minus if odd else plus + minus
