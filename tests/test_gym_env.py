"""Making Gymnasium envs by id (``es_toolkit.gym.env``): errors that name the missing
extra or the unsupported space."""

import sys

import pytest

gymnasium = pytest.importorskip("gymnasium")

from es_toolkit import gym as gym_lib  # noqa: E402


def test_bad_env_ids_and_spaces_get_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="'NoSuchEnv-v0' is not a registered Gymnasium"):
        gym_lib.make_env("NoSuchEnv-v0")
    with pytest.raises(
        ValueError, match=r"Blackjack-v1: no policy for this observation space: Tuple"
    ):
        gym_lib.make_env("Blackjack-v1")

    def missing(*args, **kwargs):
        raise gymnasium.error.DependencyNotInstalled("MuJoCo is not installed")

    monkeypatch.setattr(gymnasium, "make", missing)
    with pytest.raises(ImportError, match=r'pip install "es_toolkit\[mujoco\]"'):
        gym_lib.make_env("HalfCheetah-v5")
    with pytest.raises(ImportError, match=r'pip install "es_toolkit\[box2d\]"'):
        gym_lib.make_env("LunarLander-v3")
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(ImportError, match=r'pip install "es_toolkit\[gym\]"'):
        gym_lib.make_env("CartPole-v1")
