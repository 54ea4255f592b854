"""Population sampling: member keys, antithetic pairs, orthogonal blocks, chunks, budgets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree
import pytest
from trees import assert_trees_close, assert_trees_equal

from es_toolkit import Gumbel, Normal
from es_toolkit import sampling as sampling_lib

KEY = jax.random.key(3)
LIKE = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(2)}


def test_fold_in_member_keys_equal_split():
    """The member-key rule: fold_in(key, i) is split(key, n)[i] (also for raw keys), so
    members can be generated one slice at a time and still match optax's split."""
    for key in (KEY, jax.random.PRNGKey(5)):
        split = jax.random.split(key, 9)
        folded = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(9))
        np.testing.assert_array_equal(jax.random.key_data(split), jax.random.key_data(folded))


def test_any_slice_of_the_population_regenerates_identically():
    sampling = sampling_lib.make_sampling(20, Normal())
    whole = sampling_lib.sample_members(sampling, KEY, 0, 20, LIKE)
    part = sampling_lib.sample_members(sampling, KEY, 7, 5, LIKE)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(part), strict=True):
        np.testing.assert_array_equal(a[7:12], b)
    member_9 = optax.tree.random_like(jax.random.fold_in(KEY, 9), LIKE, sampler=Normal().sample)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(member_9), strict=True):
        np.testing.assert_array_equal(a[9], b)


def test_antithetic_members_are_adjacent_mirrored_pairs():
    sampling = sampling_lib.make_sampling(8, Normal(), antithetic=True)
    members = sampling_lib.sample_members(sampling, KEY, 0, 4, LIKE)
    directions = sampling_lib.sample_directions(sampling, KEY, 0, 4, LIKE)
    for m, z in zip(jax.tree.leaves(members), jax.tree.leaves(directions), strict=True):
        assert m.shape[0] == 8
        np.testing.assert_array_equal(m[0::2], z)
        np.testing.assert_array_equal(m[1::2], -z)


def flat(tree):
    leaves = jax.tree.leaves(tree)
    return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)


def test_orthogonal_blocks_are_orthogonal_and_keep_lengths():
    """Within each block of d = 14 directions rows are orthogonal; lengths are the draws'."""
    sampling = sampling_lib.make_sampling(30, Normal(), orthogonal=True)
    assert sampling_lib.orthogonal_block(sampling, LIKE) == 14
    ortho = flat(sampling_lib.sample_directions(sampling, KEY, 0, 30, LIKE))
    plain = flat(
        sampling_lib.sample_directions(sampling._replace(orthogonal=False), KEY, 0, 30, LIKE)
    )
    np.testing.assert_allclose(
        jnp.linalg.norm(ortho, axis=1), jnp.linalg.norm(plain, axis=1), rtol=1e-5
    )
    for start, stop in ((0, 14), (14, 28), (28, 30)):
        gram = ortho[start:stop] @ ortho[start:stop].T
        off_diagonal = gram - jnp.diag(jnp.diag(gram))
        assert float(jnp.max(jnp.abs(off_diagonal))) < 1e-4 * float(jnp.max(jnp.diag(gram)))
    # Gram-Schmidt keeps the first row of each block.
    np.testing.assert_allclose(ortho[14], plain[14], rtol=1e-5, atol=1e-6)


def test_orthogonal_directions_are_marginally_standard_normal():
    """Each orthogonalized coordinate stays N(0, 1): over 4,000 blocks of d = 4 directions,
    mean and variance of all 64,000 coordinates are within 5 standard errors (0.02, 0.03)."""
    like = jnp.zeros(4)
    sampling = sampling_lib.make_sampling(16_000, Normal(), orthogonal=True)
    z = sampling_lib.sample_directions(sampling, KEY, 0, 16_000, like)
    assert abs(float(jnp.mean(z))) < 0.02
    assert abs(float(jnp.var(z)) - 1.0) < 0.03


def test_sweep_sums_chunks_with_remainder():
    sampling = sampling_lib.make_sampling(23, Normal(), chunk_size=5)

    def chunk_sum(start, count):
        return jnp.sum(start + jnp.arange(count))

    assert int(jax.jit(lambda: sampling_lib.sweep(sampling, LIKE, chunk_sum))()) == sum(range(23))


@pytest.mark.parametrize(
    "options",
    [{}, {"antithetic": True}, {"orthogonal": True}, {"antithetic": True, "orthogonal": True}],
)
def test_weighted_sums_with_given_directions_equal_regenerated(options):
    """Directions already drawn (as ask draws them) give the sums that regenerating them
    from the key gives, chunked or not; the key is then unused."""
    sampling = sampling_lib.make_sampling(12, Normal(), **options)
    chunked = sampling_lib.make_sampling(12, Normal(), chunk_size=4, **options)
    n_dirs = sampling_lib.num_directions(sampling)
    z = sampling_lib.sample_directions(sampling, KEY, 0, n_dirs, LIKE)
    w, v = jnp.linspace(-1.0, 1.0, 12), jnp.cos(jnp.arange(12.0))
    want = sampling_lib.weighted_sums(sampling, KEY, LIKE, w, v)
    other_key = jax.random.key(99)
    got = sampling_lib.weighted_sums(sampling, other_key, LIKE, w, v, directions=z)
    assert_trees_equal(got, want)
    assert_trees_close(sampling_lib.weighted_sums(chunked, KEY, LIKE, w, v), got)
    squared = sampling_lib.weighted_sum(sampling, other_key, LIKE, v, squared=True, directions=z)
    assert_trees_equal(squared, want[1])


def test_given_directions_of_the_wrong_shape_are_named():
    sampling = sampling_lib.make_sampling(8, Normal(), antithetic=True)
    members = sampling_lib.sample_members(sampling, KEY, 0, 4, LIKE)  # 8 members, not 4
    with pytest.raises(ValueError, match="directions must hold the noise of every direction"):
        sampling_lib.weighted_sum(sampling, KEY, LIKE, jnp.ones(8), directions=members)
    with pytest.raises(ValueError, match="leading axis of 4"):
        sampling_lib.weighted_sum(sampling, KEY, LIKE, jnp.ones(8), directions={"w": members["w"]})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"population_size": 0}, ValueError, "population_size must be an int >= 1, got 0"),
        ({"population_size": 4.0}, TypeError, "population_size must be an int"),
        ({"population_size": True}, TypeError, "population_size must be an int"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be an int >= 1"),
        ({"antithetic": True, "noise": Gumbel()}, ValueError, "symmetric"),
        ({"antithetic": True, "population_size": 7}, ValueError, "must be even, got 7"),
        ({"antithetic": True, "chunk_size": 3}, ValueError, "chunk_size must be even, got 3"),
        ({"orthogonal": True, "noise": Gumbel()}, ValueError, "Gaussian"),
        ({"antithetic": 1}, TypeError, "antithetic must be a bool"),
        ({"noise": "normal"}, TypeError, "noise must implement sample"),
        ({"memory_budget": 0}, ValueError, "memory_budget must be an int >= 1, got 0"),
    ],
)
def test_bad_options_are_named(kwargs, error, match):
    options = {"population_size": 8, "noise": Normal(), **kwargs}
    with pytest.raises(error, match=match):
        sampling_lib.make_sampling(options.pop("population_size"), options.pop("noise"), **options)


# --- memory budget -----------------------------------------------------------------------

MIB = 2**20


def test_auto_chunk_size_splits_only_what_exceeds_the_budget():
    """10,000 members of d = 100,000 float32 (4 GB of noise) under 256 MiB: the fewest
    chunks that fit (15), of nearly equal size and whole pairs; a small problem, or no
    budget, holds the whole population (None)."""
    big = jax.ShapeDtypeStruct((100_000,), jnp.float32)
    chunk = sampling_lib.auto_chunk_size(10_000, big, 256 * MIB, unit=2)
    member_bytes = 100_000 * 4
    assert chunk % 2 == 0
    assert chunk * member_bytes <= 256 * MIB
    assert -(-10_000 // chunk) == math.ceil(10_000 * member_bytes / (256 * MIB)) == 15
    assert sampling_lib.auto_chunk_size(10_000, big, None) is None
    assert sampling_lib.auto_chunk_size(64, jnp.zeros(10), 256 * MIB) is None
    exact = jax.ShapeDtypeStruct((64, 1024), jnp.float32)  # 256 KiB a member
    assert sampling_lib.auto_chunk_size(1024, exact, 256 * MIB) is None  # fits exactly
    assert sampling_lib.auto_chunk_size(1025, exact, 256 * MIB) == 513


def test_auto_chunk_size_counts_bytes_of_every_leaf_and_keeps_whole_units():
    tree = {"a": jax.ShapeDtypeStruct((10,), jnp.float32), "b": jnp.zeros(10, jnp.bfloat16)}
    assert sampling_lib.tree_bytes(tree) == 60
    assert sampling_lib.auto_chunk_size(100, tree, 600) == 10
    assert sampling_lib.auto_chunk_size(100, tree, 600, unit=4) == 8
    assert sampling_lib.auto_chunk_size(100, tree, 1, unit=6) == 6  # at least one unit


def test_sampling_with_a_budget_chunks_its_sweeps_alone():
    """Without chunk_size, a memory budget picks the chunk (whole orthogonal blocks and
    pairs); the sums equal the unchunked ones to float rounding."""
    like_bytes = sampling_lib.tree_bytes(LIKE)  # 14 float32
    options = {"antithetic": True}
    whole = sampling_lib.make_sampling(24, Normal(), **options)
    tight = sampling_lib.make_sampling(24, Normal(), memory_budget=6 * like_bytes, **options)
    roomy = sampling_lib.make_sampling(24, Normal(), memory_budget=24 * like_bytes, **options)
    assert sampling_lib.chunk_directions(whole, LIKE) == 12
    assert sampling_lib.chunk_directions(roomy, LIKE) == 12
    assert sampling_lib.chunk_directions(tight, LIKE) == 3
    w, v = jnp.linspace(-1.0, 1.0, 24), jnp.cos(jnp.arange(24.0))
    want = sampling_lib.weighted_sums(whole, KEY, LIKE, w, v)
    assert_trees_close(sampling_lib.weighted_sums(tight, KEY, LIKE, w, v), want)
    ortho = sampling_lib.make_sampling(60, Normal(), orthogonal=True, memory_budget=20 * like_bytes)
    assert sampling_lib.chunk_directions(ortho, LIKE) == 14  # one block of d = 14


def test_weighted_sum_slices_the_weights_of_each_chunk():
    """Each chunk contracts its own members' weights: a one-hot weight picks one member's
    noise, wherever it falls (first chunk, a middle one, the remainder)."""
    sampling = sampling_lib.make_sampling(11, Normal(), chunk_size=3)
    members = sampling_lib.sample_members(sampling, KEY, 0, 11, LIKE)
    for i in (0, 4, 10):
        got = sampling_lib.weighted_sum(sampling, KEY, LIKE, jnp.zeros(11).at[i].set(1.0))
        assert_trees_close(got, jax.tree.map(lambda m, i=i: m[i], members), rtol=1e-6)
