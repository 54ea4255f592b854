"""Episodes of NumPy policies in several envs side by side (``es_toolkit.gym.episodes``).

Oracle: Gymnasium's envs stepped one at a time in a plain loop.
"""

import jax
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gym_helpers import cartpole_population, misbehaving_envs  # noqa: E402, F401

from es_toolkit import gym as gym_lib  # noqa: E402
from es_toolkit.gym import _running, episodes  # noqa: E402
from es_toolkit.policies import batch_obs_stats, make_policy  # noqa: E402


@pytest.fixture(scope="module")
def cartpole():
    return cartpole_population()


def test_envs_side_by_side_and_unwrapped_give_each_members_own_episodes(cartpole):
    """A worker steps several envs in lock step, under gymnasium.make's bookkeeping
    wrappers: each episode must equal its member run alone in the wrapped env."""
    policy, population = cartpole
    params = jax.tree.map(np.asarray, population)
    stats = jax.tree.map(
        np.asarray, batch_obs_stats(4, np.random.default_rng(0).normal(size=(9, 4)))
    )
    rows = np.array([0, 1, 2, 3, 4, 5, 5, 0, 3, 1, 2])
    batch = episodes.EpisodeBatch(params, rows, rows + 10, np.arange(11) + 100, stats)
    wrapped = [gym_lib.make_env("CartPole-v1", max_episode_steps=30) for _ in range(4)]
    bare = [episodes.unwrap_bookkeeping(env) for env in wrapped]
    assert {limit for _, limit in bare} == {30}
    assert all(type(env) is type(wrapped[0].unwrapped) for env, _ in bare)
    alone = episodes.run_batch(wrapped[:1], policy.numpy_apply, batch)
    assert 30 in alone.lengths  # episodes end at the limit...
    assert alone.lengths.min() < 30  # ...and before it
    for envs, limit in ((wrapped, None), ([env for env, _ in bare], 30), (wrapped[:3], 30)):
        together = episodes.run_batch(envs, policy.numpy_apply, batch, limit)
        jax.tree.map(np.testing.assert_array_equal, together, alone)


def test_observations_are_reduced_in_groups_with_the_same_statistics(cartpole, monkeypatch):
    """A worker keeps the observations of at most ``REDUCE_EVERY`` finished episodes (and
    the running ones); reducing them in groups changes no number."""
    policy, population = cartpole
    params = jax.tree.map(np.asarray, population)
    rows = np.arange(6).repeat(3)
    batch = episodes.EpisodeBatch(params, rows, rows, np.arange(18) + 7, None)
    envs = [gym_lib.make_env("CartPole-v1") for _ in range(4)]
    whole = episodes.run_batch(envs, policy.numpy_apply, batch)
    held = []
    finish = episodes._Observations.finish

    def counting_finish(self, *args):
        finish(self, *args)
        held.append(len(self.finished))

    monkeypatch.setattr(gym_lib.episodes, "REDUCE_EVERY", 3)
    monkeypatch.setattr(episodes._Observations, "finish", counting_finish)
    grouped = episodes.run_batch(envs, policy.numpy_apply, batch)
    jax.tree.map(np.testing.assert_array_equal, grouped, whole)
    assert len(held) == 18
    assert max(held) == 2  # the third finished one reduces the three


def test_statistics_of_episodes_longer_than_a_buffer_match_a_plain_loop():
    """Pendulum's 200-step episodes outgrow a worker's first observation buffer (64 rows)
    twice; every observation still counts, each episode's statistics on their own."""
    envs = [gym_lib.make_env("Pendulum-v1") for _ in range(2)]
    policy = make_policy("linear", envs[0].observation_space, envs[0].action_space, zero_init=False)
    params = jax.tree.map(np.asarray, jax.vmap(policy.init)(jax.random.split(jax.random.key(2), 3)))
    seeds = np.array([11, 12, 13])
    batch = episodes.EpisodeBatch(params, np.arange(3), np.arange(3), seeds, None)
    results = episodes.run_batch(envs, policy.numpy_apply, batch)

    def oracle(member, seed):
        env = gymnasium.make("Pendulum-v1")
        obs, _ = env.reset(seed=int(seed))
        seen, total, done = [], 0.0, False
        while not done:
            seen.append(obs)
            action = policy.numpy_apply(jax.tree.map(lambda leaf: leaf[member], params), obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        return total, np.array(seen, np.float64)

    for member, seed in enumerate(seeds):
        total, seen = oracle(member, seed)
        assert results.lengths[member] == results.obs_stats.count[member] == len(seen) == 200
        assert results.returns[member] == total
        mean = results.obs_stats.mean[member]
        np.testing.assert_allclose(mean, seen.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            results.obs_stats.m2[member], ((seen - mean) ** 2).sum(0), rtol=1e-10
        )


def test_unwrapping_keeps_any_wrapper_that_changes_episodes():
    env = gymnasium.wrappers.ClipReward(gym_lib.make_env("CartPole-v1"), 0.0, 0.5)
    assert episodes.unwrap_bookkeeping(env) == (env, None)
    assert episodes.unwrap_bookkeeping(env.unwrapped) == (env.unwrapped, None)


@pytest.mark.parametrize("start", [0, -3, 5])
def test_fast_action_check_answers_as_gymnasium(start):
    env = gym_lib.make_env("CartPole-v1").unwrapped
    env.action_space = gymnasium.spaces.Discrete(4, start=start)
    episodes.check_actions_fast(env)
    check, oracle = env.action_space.contains, gymnasium.spaces.Discrete(4, start=start).contains
    assert check is not oracle
    ints = range(start - 3, start + 8)
    actions = [
        *(np.int64(i) for i in ints),
        *np.argmax(np.eye(8), axis=-1),  # what the NumPy forward pass gives
        *ints,
        *(np.int32(i) for i in ints),
        *(np.uint8(i) for i in range(8)),
        np.array(start),
        np.array([start]),
        float(start),
        np.float64(start),
        True,
        None,
        "1",
    ]
    for action in actions:
        assert check(action) is oracle(action), action
    env.reset(seed=0)
    env.step(np.int64(start))
    with pytest.raises(AssertionError, match="invalid"):
        env.step(np.int64(start + 4))


def test_fast_action_check_leaves_other_spaces_alone():
    class Custom(gymnasium.spaces.Discrete):
        pass

    for space in (
        gymnasium.spaces.Discrete(3, dtype=np.int32),
        Custom(3),
        gymnasium.spaces.Box(-1.0, 1.0, (2,)),
    ):
        env = gym_lib.make_env("CartPole-v1").unwrapped
        env.action_space = space
        episodes.check_actions_fast(env)
        assert "contains" not in vars(space)


@pytest.mark.usefixtures("misbehaving_envs")
def test_an_env_error_names_its_episode_and_the_board_shows_it():
    """RaisingEnv raises at its 5th step: first in env 0, which runs the first episode."""
    envs = [gym_lib.make_env("gym_test_envs:RaisingEnv-v0") for _ in range(3)]
    params = {"w": np.zeros((3, 2, 2), np.float32), "b": np.zeros((3, 2), np.float32)}
    batch = episodes.EpisodeBatch(
        params, np.arange(3), np.array([7, 8, 9]), np.arange(3) + 21, None
    )
    board = _running.local_row(3)
    indices = iter(range(3))
    lock_step = episodes.LockStep(
        envs, lambda params, obs: np.zeros(len(obs), np.int64), None, board
    )
    with pytest.raises(episodes.EpisodeError, match=r"simulation diverged \(member 7, seed 21\)"):
        lock_step.run(batch, lambda: next(indices, None))
    assert list(board) == [0, 0, 1, 2]  # stepping env 0, which runs episode 0


def test_a_lock_step_with_no_episode_to_run_gives_empty_results(cartpole):
    policy, population = cartpole
    params = jax.tree.map(np.asarray, population)
    batch = episodes.EpisodeBatch(params, np.arange(6), np.arange(6), np.arange(6), None)
    indices, results = episodes.LockStep([gym_lib.make_env("CartPole-v1")], policy.numpy_apply).run(
        batch, lambda: None
    )
    assert indices.shape == results.returns.shape == results.lengths.shape == (0,)
    assert results.obs_stats.count.shape == (0,)
