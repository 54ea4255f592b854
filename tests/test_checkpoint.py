"""Checkpoints: exact round trip, atomic writes, clear errors for other runs and bad files."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from es_toolkit.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from es_toolkit.strategies import open_es, pgpe


def state_of(strategy, params):
    state = strategy.init(params)
    key = jax.random.key(1)
    fitness = -jax.vmap(lambda p: jnp.sum(p["w"] ** 2))(strategy.ask(key, state))
    return strategy.tell(key, state, fitness)[0]


PARAMS = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(2)}


@pytest.mark.parametrize(
    "strategy", [open_es(8, optimizer=optax.adam(0.1)), pgpe(8)], ids=["open_es", "pgpe"]
)
def test_round_trip_is_exact(tmp_path, strategy):
    state = state_of(strategy, PARAMS)
    path = save_checkpoint(
        tmp_path / "run" / "ckpt.npz", state, {"generation": 1, "env": "CartPole-v1"}
    )
    restored, metadata = load_checkpoint(path, strategy.init(PARAMS))
    assert metadata == {"generation": 1, "env": "CartPole-v1"}
    assert read_metadata(path)["env"] == "CartPole-v1"
    assert type(restored) is type(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert not list((tmp_path / "run").glob(".*partial"))


def test_other_shape_is_refused(tmp_path):
    strategy = open_es(8)
    path = save_checkpoint(tmp_path / "c.npz", strategy.init(PARAMS), {})
    other = {"w": jnp.zeros((2, 4)), "b": jnp.ones(2)}
    with pytest.raises(CheckpointError, match=r"\['w'\] has shape \(2, 3\).*expects \(2, 4\)"):
        load_checkpoint(path, strategy.init(other))
    with pytest.raises(CheckpointError, match="another structure"):
        load_checkpoint(path, strategy.init({"w": jnp.zeros((2, 3))}))


def test_truncated_and_corrupted_files(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", {"x": jnp.arange(1000.0)}, {})
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(tmp_path / "cut.npz", {"x": jnp.zeros(1000)})
    flipped = bytearray(data)
    index = data.index(np.arange(1000.0, dtype=np.float32)[500].tobytes())
    flipped[index] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "flip.npz", {"x": jnp.zeros(1000)})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.npz", {"x": jnp.zeros(1000)})


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.npz", {"x": jnp.zeros(3)}, {"generation": 1})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"x": jnp.ones(3)}, {"generation": 2})
    assert read_metadata(path) == {"generation": 1}
