"""Which slice of the population the code being traced owns, when sharded over devices.

``es_toolkit.parallel`` traces a function inside ``jax.shard_map`` over the mesh axis
``"pop"`` and, while it traces, sets the shard here. The estimators read it at trace time:
``sampling.sweep`` visits only this device's directions and sums over devices with
``psum``; ``strategies.base.evaluate`` evaluates only this device's members and gathers
their fitness. Outside ``parallel`` there is no shard and everything is whole, so the
library's functions stay pure and need no device argument.

Device ``i`` of ``n`` owns the ``i``-th contiguous block of ``total / n`` directions (and
their members): member ``j`` keeps ``fold_in(key, j)`` wherever it runs, which is why the
results do not depend on ``n``.
"""

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

AXIS = "pop"


class Shard(NamedTuple):
    axis_name: str
    num_shards: int


_CURRENT: contextvars.ContextVar[Shard | None] = contextvars.ContextVar("shard", default=None)


def current() -> Shard | None:
    """The shard being traced, or None outside ``parallel``."""
    return _CURRENT.get()


@contextlib.contextmanager
def tracing(num_shards: int, axis_name: str = AXIS) -> Iterator[Shard]:
    """Sets the shard while a function is traced inside ``shard_map`` (see ``parallel``)."""
    token = _CURRENT.set(Shard(axis_name, num_shards))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def whole() -> Iterator[None]:
    """Traces the enclosed code unsharded, even inside ``parallel`` (e.g. a computation
    every device repeats on replicated data)."""
    token = _CURRENT.set(None)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def own_range(total: int, what: str = "directions") -> tuple[Any, int]:
    """``(start, count)`` of this device's block of ``total`` items (``(0, total)``
    outside ``parallel``); a clear error when ``total`` does not divide evenly."""
    shard = current()
    if shard is None:
        return 0, total
    if total % shard.num_shards:
        raise ValueError(
            f"{total} {what} do not split evenly over {shard.num_shards} devices; choose a "
            f"population with a multiple of {shard.num_shards} {what} (e.g. "
            f"{-(-total // shard.num_shards) * shard.num_shards})."
        )
    count = total // shard.num_shards
    return jax.lax.axis_index(shard.axis_name) * count, count


def psum(tree: Any) -> Any:
    """Sum over devices of per-device partial sums (identity outside ``parallel``)."""
    shard = current()
    return tree if shard is None else jax.lax.psum(tree, shard.axis_name)


def all_gather(tree: Any) -> Any:
    """Concatenates each device's block along the leading axis, in device order, so every
    device holds the whole (identity outside ``parallel``).

    The leaves travel packed in one array (32-bit leaves bit-cast to one type), so a
    pytree costs one collective, not one per leaf: across processes each collective
    costs a network round trip.
    """
    shard = current()
    if shard is None:
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    if not all(jnp.dtype(leaf.dtype).itemsize == 4 for leaf in leaves):
        return jax.tree.map(lambda x: jax.lax.all_gather(x, shard.axis_name, tiled=True), tree)
    rows = leaves[0].shape[0]
    flat = [jax.lax.bitcast_convert_type(leaf, jnp.uint32).reshape(rows, -1) for leaf in leaves]
    gathered = jax.lax.all_gather(jnp.concatenate(flat, axis=1), shard.axis_name, tiled=True)
    out, offset = [], 0
    for leaf, part in zip(leaves, flat, strict=True):
        width = part.shape[1]
        block = gathered[:, offset : offset + width].reshape(-1, *leaf.shape[1:])
        out.append(jax.lax.bitcast_convert_type(block, leaf.dtype))
        offset += width
    return jax.tree.unflatten(treedef, out)


def varying(tree: Any) -> Any:
    """Marks a value every device starts equal (a scan's zero carry) as per-device, so it
    can accumulate per-device partial sums (identity outside ``parallel``)."""
    shard = current()
    if shard is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.pcast(x, shard.axis_name, to="varying"), tree)
