"""Parameters that rollout workers read in place (``es_toolkit.gym._shared``)."""

import os

import jax
import numpy as np

from es_toolkit.gym import _shared


def test_shared_arrays_read_back_as_written():
    fd = _shared.open_file()
    try:
        rng = np.random.default_rng(0)
        trees = [
            {"w": rng.normal(size=(5, 3, 2)).astype(np.float32), "b": np.arange(7)},
            {"big": rng.normal(size=(100, 1000)), "flag": np.array(True), "none": np.zeros(0)},
            (np.asfortranarray(rng.normal(size=(4, 6))), [np.int8(3) * np.ones((2, 2), np.int8)]),
        ]
        for tree in trees:  # the file grows, then holds a smaller tree
            layout = _shared.write(fd, tree)
            read = _shared.read(fd, layout)
            assert jax.tree.structure(read) == jax.tree.structure(tree)
            for got, want in zip(jax.tree.leaves(read), jax.tree.leaves(tree), strict=True):
                assert got.dtype == want.dtype
                assert got.shape == want.shape
                np.testing.assert_array_equal(got, want)
                assert not got.flags.writeable
            assert all(offset % 64 == 0 for offset, _, _ in layout.leaves)
    finally:
        os.close(fd)
