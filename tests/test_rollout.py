"""Rollouts against Gymnasium's own environment and a plain Python loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from es_toolkit.envs import make

from es_toolkit import rollout
from es_toolkit.policies import batch_obs_stats, linear_policy, normalize, update_obs_stats

gym = pytest.importorskip("gymnasium")

ENV = make("CartPole-v1")
PARAMS = ENV.default_params
POLICY = linear_policy(ENV.observation_space(PARAMS), ENV.action_space(PARAMS), zero_init=False)
WEIGHTS = POLICY.init(jax.random.key(3))


def test_episode_matches_gymnasium():
    """Same initial state, same policy: Gymnasium's CartPole gives the same return and length.

    The policy acts on each env's own observation, so the two trajectories only stay equal
    if the dynamics do (float32 here, float64 in Gymnasium; a linear policy away from its
    decision boundary is insensitive to that rounding over an episode).
    """
    key = jax.random.key(11)
    ours = jax.jit(lambda k: rollout.episode(k, ENV, PARAMS, POLICY.apply, WEIGHTS))(key)
    obs, state = ENV.reset(jax.random.split(key)[0], PARAMS)
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([state.x, state.x_dot, state.theta, state.theta_dot], np.float64)
    obs, total, length, done = np.asarray(obs), 0.0, 0, False
    while not done:
        action = int(POLICY.apply(WEIGHTS, jnp.asarray(obs, jnp.float32)))
        obs, reward, terminated, truncated, _ = env.step(action)
        total, length, done = total + reward, length + 1, terminated or truncated
    assert int(ours.lengths) == length
    assert float(ours.returns) == pytest.approx(total)


def test_done_mask_and_observation_statistics_match_a_python_loop():
    """Rewards stop at the first done; statistics cover exactly the observations acted on."""
    key = jax.random.key(5)
    stats = batch_obs_stats(4, jnp.array([[0.0, 0.1, -0.1, 0.2], [0.5, -0.2, 0.05, 0.0]]))
    got = rollout.episode(key, ENV, PARAMS, POLICY.apply, WEIGHTS, stats)
    reset_key, step_key = jax.random.split(key)
    obs, state = ENV.reset(reset_key, PARAMS)
    seen, total, keys = [], 0.0, jax.random.split(step_key, PARAMS.max_steps_in_episode)
    for step_key in keys:
        seen.append(obs)
        action = POLICY.apply(WEIGHTS, normalize(stats, obs))
        obs, state, reward, terminated, truncated, _ = ENV.step(step_key, state, action, PARAMS)
        total += float(reward)
        if terminated or truncated:
            break
    assert int(got.lengths) == len(seen)
    assert float(got.returns) == pytest.approx(total)
    expected = update_obs_stats(batch_obs_stats(4, jnp.zeros((0, 4))), jnp.stack(seen))
    np.testing.assert_allclose(got.obs_stats.mean, expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.obs_stats.m2, expected.m2, rtol=1e-4, atol=1e-5)
    assert float(got.obs_stats.count) == len(seen)


def test_population_keys_and_common_random_numbers():
    population = jax.tree.map(lambda w: jnp.stack([w, w, -w]), WEIGHTS)
    key = jax.random.key(8)
    evaluate = jax.jit(
        lambda k, crn: rollout.evaluate_population(
            k, ENV, PARAMS, POLICY.apply, population, None, 3, common_random_numbers=crn
        ),
        static_argnums=1,
    )
    separate, common = evaluate(key, False), evaluate(key, True)
    member_1 = rollout.evaluate(
        jax.random.fold_in(key, 1), ENV, PARAMS, POLICY.apply, WEIGHTS, None, 3
    )
    assert float(separate.returns[1]) == pytest.approx(float(jnp.mean(member_1.returns)))
    assert int(separate.lengths[1]) == int(jnp.sum(member_1.lengths))
    # Identical members see identical episodes only with common random numbers.
    assert float(common.returns[0]) == float(common.returns[1])
    assert float(common.obs_stats.count) == float(jnp.sum(common.lengths))
