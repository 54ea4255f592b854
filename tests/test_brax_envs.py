"""Brax's envs behind the JAX environment contract (``es_toolkit.envs.make("brax/NAME")``):
the same trajectories as Brax's own ``env.step``, the contract's spaces and time limit, and
training through the jitted-generation backend with exact resume.

MJX compiles slowly on a CPU (tens of seconds a step function), so the training runs are
marked slow. Without brax installed (it is the optional extra ``brax``) only the test of
the missing-dependency error runs.
"""

import dataclasses
import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from es_toolkit.envs import make
from es_toolkit.envs.brax_envs import brax_env_names, is_brax_id, quiet_brax
from trees import assert_trees_equal

HAS_BRAX = importlib.util.find_spec("brax") is not None
needs_brax = pytest.mark.skipif(not HAS_BRAX, reason='needs pip install "es_toolkit[brax]"')


def test_make_without_brax_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "brax", None)  # import brax now raises ImportError
    monkeypatch.setitem(sys.modules, "brax.envs", None)
    with pytest.raises(ImportError, match=r'pip install "es_toolkit\[brax\]"'):
        make("brax/ant")


def test_brax_ids_are_recognized_by_prefix():
    assert is_brax_id("brax/ant")
    assert not is_brax_id("brax/")
    assert not is_brax_id("Ant-v5")
    assert not is_brax_id("CartPole-v1")


@needs_brax
def test_unknown_brax_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"'no_such_env' is not a Brax environment.*ant"):
        make("brax/no_such_env")
    assert {"ant", "halfcheetah", "hopper", "humanoid"} <= set(brax_env_names())


@needs_brax
@pytest.mark.parametrize(
    ("name", "obs_size", "action_size"),
    # Brax's models: ant has 8 hip/ankle motors and 27 observations (positions without
    # x, y, velocities); halfcheetah 6 motors and 17 observations.
    [("ant", 27, 8), ("halfcheetah", 17, 6)],
)
def test_spaces_and_defaults(name, obs_size, action_size):
    env = make(f"brax/{name}")
    assert env.id == f"brax/{name}"
    assert env.pipeline == "mjx"
    assert env.brax_env.backend == "mjx"
    assert env.default_params.max_steps_in_episode == 1000
    obs_space, action_space = env.observation_space(), env.action_space()
    assert obs_space.shape == (obs_size,)
    assert np.all(np.isinf(obs_space.low))
    assert np.all(np.isinf(obs_space.high))
    assert action_space.shape == (action_size,)
    np.testing.assert_array_equal(action_space.low, -np.ones(action_size, np.float32))
    np.testing.assert_array_equal(action_space.high, np.ones(action_size, np.float32))
    with pytest.raises(
        ValueError, match=rf"action must be a float array of shape \({action_size},"
    ):
        env.step(jax.random.key(0), None, jnp.zeros(action_size + 1))


@needs_brax
def test_steps_equal_brax_own_steps_over_100_steps():
    """Hopper under random actions: ours and Brax's raw env, stepped with the same actions
    from the same reset key, in one jitted scan each. Hopper falls within 100 random steps,
    so the done flags are checked on both values; the time limit is set to 60 steps."""
    env = make("brax/hopper")
    params = dataclasses.replace(env.default_params, max_steps_in_episode=60)
    steps = 100
    actions = jax.random.uniform(jax.random.key(1), (steps, env.num_actions), minval=-1, maxval=1)
    reset_key = jax.random.key(2)

    @jax.jit
    def both():
        obs, state = env.reset(reset_key, params)

        def ours(state, step):
            key, action = step
            obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
            return state, (obs, reward, terminated, truncated)

        step_keys = jax.random.split(jax.random.key(3), steps)
        _, our_steps = jax.lax.scan(ours, state, (step_keys, actions))

        def brax_own(brax_state, action):
            brax_state = env.brax_env.step(brax_state, action)
            return brax_state, (brax_state.obs, brax_state.reward, brax_state.done)

        brax_reset = env.brax_env.reset(reset_key)
        _, brax_steps = jax.lax.scan(brax_own, brax_reset, actions)
        return obs, brax_reset.obs, our_steps, brax_steps

    with quiet_brax():  # Brax's own step, traced here, gives MJX's deprecation notices
        obs, brax_obs, (our_obs, rewards, terminated, truncated), brax_steps = both()
    brax_step_obs, brax_rewards, brax_done = brax_steps
    np.testing.assert_array_equal(obs, brax_obs)
    np.testing.assert_array_equal(our_obs, brax_step_obs)
    np.testing.assert_array_equal(rewards, brax_rewards)
    np.testing.assert_array_equal(terminated, np.asarray(brax_done) == 1.0)
    # The check covers both flag values.
    assert terminated.any()
    assert not terminated.all()
    np.testing.assert_array_equal(truncated, np.arange(1, steps + 1) >= 60)
    assert our_obs.dtype == rewards.dtype == jnp.float32


def tiny_config(**overrides):
    from es_toolkit.training import TrainConfig

    settings = {
        "population_size": 4,
        "num_generations": 2,
        "max_episode_steps": 20,
        "eval_every": 1,
        "eval_episodes": 1,
        "final_eval_episodes": 1,
        **overrides,
    }
    return TrainConfig.for_env("brax/ant", **settings)


@needs_brax
def test_task_defaults_of_brax_envs_make_valid_configs():
    from es_toolkit.training import TASK_DEFAULTS, TrainConfig
    from es_toolkit.training.backends import resolve_backend

    for env_id in ("brax/ant", "brax/halfcheetah"):
        config = TrainConfig.for_env(env_id)
        assert config.env == env_id
        assert config.population_size == TASK_DEFAULTS[env_id]["population_size"]
        assert resolve_backend(config) == "jax"


@needs_brax
@pytest.mark.slow
def test_two_generations_train_through_the_jitted_backend(tmp_path):
    from es_toolkit import report
    from es_toolkit.training import train

    result = train(tiny_config(), tmp_path, progress=False)
    assert int(result.state.generation) == 2
    rows = report.read_jsonl(tmp_path / "metrics.jsonl")
    assert [row["generation"] for row in rows] == [0, 1]
    # Every member's episode lasts at most the 20 steps asked for.
    assert 0 < int(result.state.env_steps) <= 2 * 4 * 20
    assert np.isfinite(result.final_return_mean)
    assert (tmp_path / "checkpoint.npz").exists()


@needs_brax
@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(tmp_path):
    from es_toolkit.training import train

    whole = train(tiny_config(), tmp_path / "whole", progress=False)
    train(tiny_config(num_generations=1), tmp_path / "split", progress=False)
    resumed = train(tiny_config(), tmp_path / "split", resume=True, progress=False)
    assert int(resumed.state.generation) == 2
    assert_trees_equal(resumed.state, whole.state)
    assert resumed.final_return_mean == whole.final_return_mean
