"""Arrays the parent writes once per call and every rollout worker reads in place.

Any worker may run any episode of a call (see ``_claims``), so every worker needs every
member's parameters. Sent over each worker's socket they would be pickled, copied and held
once per worker; here they go once into a file that lives in memory (``memfd_create`` on
Linux, an unlinked temporary file elsewhere), which the workers map read-only: one copy,
whatever the number of workers, and no copy at all in the workers. The rest of a call's
batch (seeds, observation statistics) goes with them, so that the message to each worker is
only the ``Layout``, the same bytes from call to call.
"""

import mmap
import os
import tempfile
from typing import Any, NamedTuple

import jax
import numpy as np

# Each array starts on a multiple of this many bytes (a cache line).
_ALIGN = 64


class Layout(NamedTuple):
    """Where the arrays of a pytree lie in the file: small, and sent to the workers."""

    treedef: Any
    leaves: tuple[tuple[int, tuple[int, ...], str], ...]  # (offset, shape, dtype) each
    size: int  # bytes used


def open_file() -> int:
    """A new, empty file in memory, as a descriptor that child processes inherit."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("es_toolkit-batch", 0)
    else:  # macOS: the page cache of an unlinked file
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.set_inheritable(fd, True)
    return fd


def write(fd: int, tree: Any) -> Layout:
    """Writes the arrays of ``tree`` into the file (growing it if needed)."""
    leaves, treedef = jax.tree.flatten(tree)
    arrays = [np.asarray(leaf, order="C") for leaf in leaves]
    placed, offset = [], 0
    for array in arrays:
        placed.append((offset, array.shape, array.dtype.str))
        offset += -(-array.nbytes // _ALIGN) * _ALIGN
    if os.fstat(fd).st_size < offset:
        os.ftruncate(fd, offset)
    for array, (start, _, _) in zip(arrays, placed, strict=True):
        view = memoryview(array.reshape(-1).view(np.uint8))
        while view:  # pwrite may write less than asked for
            written = os.pwrite(fd, view, start)
            view, start = view[written:], start + written
    return Layout(treedef, tuple(placed), offset)


def read(fd: int, layout: Layout) -> Any:
    """The pytree ``write`` laid out, as read-only arrays on a map of the file."""
    buffer = mmap.mmap(fd, layout.size, access=mmap.ACCESS_READ) if layout.size else b""
    leaves = [
        np.frombuffer(buffer, np.dtype(dtype), int(np.prod(shape)), offset).reshape(shape)
        for offset, shape, dtype in layout.leaves
    ]
    return jax.tree.unflatten(layout.treedef, leaves)
