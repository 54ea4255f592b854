"""Evaluation on Gymnasium envs (``es_toolkit.gym.evaluation``): seeds from the key,
results that do not depend on the number of workers.

Oracles: Gymnasium's own envs stepped in a plain loop in this process, actions from the
JAX ``apply`` (or the NumPy forward pass where float32 rounding would be amplified).
"""

import jax
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gym_helpers import (  # noqa: E402
    cartpole_population,
    members,
    misbehaving_envs,  # noqa: F401
    random_params,
)

from es_toolkit import gym as gym_lib  # noqa: E402
from es_toolkit.gym import RolloutPool, WorkerSpec  # noqa: E402
from es_toolkit.gym._seeds import episode_seeds  # noqa: E402
from es_toolkit.policies import batch_obs_stats, make_policy, normalize  # noqa: E402
from es_toolkit.strategies import open_es  # noqa: E402


@pytest.fixture(scope="module")
def cartpole():
    return cartpole_population()


def plain_gymnasium_episode(env_id, apply, params, stats, seed):
    """The oracle: Gymnasium's env in a plain loop, actions from the JAX apply."""
    env = gymnasium.make(env_id)
    obs, _ = env.reset(seed=int(seed))
    total, seen, done = 0.0, [], False
    while not done:
        seen.append(obs)
        policy_obs = obs if stats is None else normalize(stats, obs)
        action = np.asarray(apply(params, policy_obs))
        obs, reward, terminated, truncated, _ = env.step(
            action.item() if action.ndim == 0 else action
        )
        total += reward
        done = terminated or truncated
    env.close()
    return total, len(seen), np.stack(seen)


@pytest.mark.parametrize("normalized", [False, True])
def test_population_returns_match_gymnasium_and_not_the_worker_count(cartpole, normalized):
    policy, population = cartpole
    stats = (
        batch_obs_stats(4, jax.random.normal(jax.random.key(5), (30, 4))) if normalized else None
    )
    key = jax.random.key(7)
    runs = {}
    for workers in (1, 3):
        with RolloutPool(WorkerSpec("CartPole-v1", "linear", {}), workers) as pool:
            runs[workers] = gym_lib.evaluate_population(pool, key, population, stats, 2)
    for field in ("returns", "lengths"):
        np.testing.assert_array_equal(getattr(runs[1], field), getattr(runs[3], field))
    jax.tree.map(np.testing.assert_array_equal, runs[1].obs_stats, runs[3].obs_stats)

    seeds = episode_seeds(key, 6, 2)
    apply = jax.jit(policy.apply)
    oracle = [
        [plain_gymnasium_episode("CartPole-v1", apply, member, stats, s) for s in member_seeds]
        for member, member_seeds in zip(members(population), seeds, strict=True)
    ]
    np.testing.assert_allclose(runs[1].returns, [np.mean([e[0] for e in m]) for m in oracle])
    np.testing.assert_array_equal(runs[1].lengths, [sum(e[1] for e in m) for m in oracle])
    everything = np.concatenate([e[2] for m in oracle for e in m])
    assert float(runs[1].obs_stats.count) == len(everything)
    np.testing.assert_allclose(runs[1].obs_stats.mean, everything.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        runs[1].obs_stats.m2 / len(everything), everything.var(0), rtol=1e-4, atol=1e-6
    )


def test_run_population_with_the_keys_seeds_is_evaluate_population(cartpole):
    _, population = cartpole
    key = jax.random.key(11)
    with RolloutPool(WorkerSpec("CartPole-v1", "linear", {}), 2) as pool:
        evaluated = gym_lib.evaluate_population(pool, key, population, None, 2, first_member=4)
        seeds = gym_lib.seed_table(key, 6, 2, first_member=4)
        ran = gym_lib.run_population(pool, population, seeds, None, first_member=4)
        with pytest.raises(ValueError, match=r"seeds must have shape \(members, episodes\)"):
            gym_lib.run_population(pool, population, seeds[:5])
    jax.tree.map(np.testing.assert_array_equal, tuple(evaluated), tuple(ran))


@pytest.mark.parametrize(
    ("env_id", "kind"),
    [("HalfCheetah-v5", "linear"), ("LunarLanderContinuous-v3", "mlp"), ("Acrobot-v1", "linear")],
)
def test_mujoco_box2d_and_classic_envs_match_gymnasium(env_id, kind):
    env = gym_lib.make_env(env_id, max_episode_steps=40)
    options = {"hidden_sizes": (8,)} if kind == "mlp" else {}
    policy = make_policy(kind, env.observation_space, env.action_space, **options)
    params = random_params(policy, jax.random.key(1))
    with RolloutPool(WorkerSpec(env_id, kind, options, 40), 2) as pool:
        runs = gym_lib.evaluate(pool, jax.random.key(3), params, None, 3)
    seeds = episode_seeds(jax.random.key(3), 1, 3)[0]
    numpy_params = jax.tree.map(np.asarray, params)

    def oracle(seed):
        # The NumPy forward pass here: MuJoCo contacts amplify the float32 rounding
        # differences from JAX's apply (1e-7) to whole units of return within 40 steps.
        limited = gymnasium.make(env_id, max_episode_steps=40)
        obs, _ = limited.reset(seed=int(seed))
        total, steps, done = 0.0, 0, False
        while not done:
            action = policy.numpy_apply(numpy_params, obs)
            obs, reward, terminated, truncated, _ = limited.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        return total, steps

    expected = [oracle(seed) for seed in seeds]
    np.testing.assert_array_equal(runs.returns, [e[0] for e in expected])
    np.testing.assert_array_equal(runs.lengths, [e[1] for e in expected])


@pytest.mark.usefixtures("misbehaving_envs")
def test_nan_returns_are_counted_and_ranked_worst():
    env = gym_lib.make_env("gym_test_envs:NanRewardEnv-v0")
    policy = make_policy("linear", env.observation_space, env.action_space)
    strategy = open_es(8, sigma=1.0)
    state = strategy.init(policy.init(jax.random.key(0)))
    key = jax.random.key(4)
    with RolloutPool(WorkerSpec("gym_test_envs:NanRewardEnv-v0", "linear", {}), 2) as pool:
        runs = gym_lib.evaluate_population(pool, key, strategy.ask(key, state))
    assert np.isnan(runs.returns).any()
    assert np.isfinite(runs.returns).any()
    new_state, metrics = strategy.tell(key, state, runs.returns)
    assert int(metrics["num_non_finite"]) == int(np.isnan(runs.returns).sum())
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(new_state.mean))
