"""The Gymnasium bridge: NumPy policies, rollout workers, errors, and training on it.

Oracles: the JAX ``apply`` of the same policy, and Gymnasium's own envs stepped in a
plain loop in this process.
"""

import dataclasses
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from es_toolkit import gym as gym_lib  # noqa: E402
from es_toolkit.gym import RolloutError, RolloutPool, WorkerSpec  # noqa: E402
from es_toolkit.policies import (  # noqa: E402
    ACTIVATIONS,
    batch_obs_stats,
    make_policy,
    normalize,
    numpy_normalizer,
)
from es_toolkit.strategies import open_es  # noqa: E402
from es_toolkit.train import TrainConfig, train  # noqa: E402

TESTS = Path(__file__).resolve().parent


def box(low, high, shape):
    return SimpleNamespace(low=np.full(shape, low), high=np.full(shape, high), shape=shape)


ACTION_SPACES = {
    "discrete": SimpleNamespace(n=4),
    "box": box(-2.0, 3.0, (3,)),
    "unbounded box": box(-np.inf, np.inf, (2,)),
}


def random_params(policy, key):
    """Params with weights of order 1, so the heads see outputs across their range."""
    params = policy.init(key)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    )


@pytest.mark.parametrize("action_space", list(ACTION_SPACES))
@pytest.mark.parametrize(
    ("kind", "options"),
    [("linear", {}), ("linear", {"bias": False})]
    + [("mlp", {"hidden_sizes": (8, 5), "activation": name}) for name in sorted(ACTIVATIONS)],
)
def test_numpy_forward_pass_matches_jax_apply(kind, options, action_space):
    space = ACTION_SPACES[action_space]
    policy = make_policy(kind, box(-np.inf, np.inf, (6,)), space, **options)
    params = random_params(policy, jax.random.key(0))
    numpy_params = jax.tree.map(np.asarray, params)
    observations = np.asarray(jax.random.normal(jax.random.key(2), (200, 6))) * 2
    expected = np.asarray(jax.jit(jax.vmap(policy.apply, in_axes=(None, 0)))(params, observations))
    got = np.stack([np.asarray(policy.numpy_apply(numpy_params, obs)) for obs in observations])
    if action_space == "discrete":
        np.testing.assert_array_equal(got, expected)
    else:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("action_space", list(ACTION_SPACES))
@pytest.mark.parametrize(
    ("kind", "options"), [("linear", {}), ("mlp", {"hidden_sizes": (8, 5), "activation": "elu"})]
)
def test_numpy_forward_pass_of_a_stack_equals_each_member_alone(kind, options, action_space):
    policy = make_policy(kind, box(-np.inf, np.inf, (6,)), ACTION_SPACES[action_space], **options)
    stack = jax.vmap(lambda k: random_params(policy, k))(jax.random.split(jax.random.key(0), 9))
    stack = jax.tree.map(np.asarray, stack)
    observations = np.asarray(jax.random.normal(jax.random.key(2), (9, 6))) * 2
    alone = [
        policy.numpy_apply(p, obs) for p, obs in zip(members(stack), observations, strict=True)
    ]
    together = policy.numpy_apply(stack, observations)
    assert together.shape == (9, *np.shape(alone[0]))
    np.testing.assert_array_equal(together, np.stack(alone))  # bit for bit


@pytest.mark.parametrize(
    ("low", "high"),
    [([-2.0, 0.0, -1.0], [3.0, 1.0, 1.0]), ([-2.0, -np.inf, 0.5], [3.0, np.inf, 4.0])],
)
def test_numpy_box_head_is_the_float32_squashing_bit_for_bit(low, high):
    """The NumPy head (bounds shaped like the actions, ``np.clip`` as two ufuncs) gives the
    documented formula's float32 numbers, for one output and for stacks."""
    space = SimpleNamespace(low=np.array(low), high=np.array(high), shape=(3,))
    head = make_policy("linear", box(-1, 1, (2,)), space).numpy_apply
    bounded = np.isfinite(space.low)
    low32 = np.where(bounded, space.low, -1).astype(np.float32)
    high32 = np.where(bounded, space.high, 1).astype(np.float32)
    for shape in ((3,), (7, 3), (16, 3), (7, 3)):
        y = np.asarray(jax.random.normal(jax.random.key(len(shape)), shape)) * 10
        expected = np.clip(
            low32 + (np.tanh(y) + np.float32(1)) / np.float32(2) * (high32 - low32), low32, high32
        )
        expected = np.where(bounded, expected, y)
        params = {"w": np.zeros((*shape[:-1], 2, 3), np.float32), "b": y}
        got = head(params, np.zeros((*shape[:-1], 2), np.float32))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_custom_activation_has_no_numpy_forward_pass():
    policy = make_policy("mlp", box(-1, 1, (3,)), SimpleNamespace(n=2), activation=jnp.sin)
    assert policy.numpy_apply is None


def test_numpy_normalizer_matches_normalize():
    batch = jax.random.normal(jax.random.key(0), (50, 4)) * jnp.array([1.0, 10.0, 0.1, 0.0]) + 3
    stats = batch_obs_stats(4, batch)
    obs = np.asarray(jax.random.normal(jax.random.key(1), (100, 4))) * 20
    expected = np.asarray(normalize(stats, obs))
    np.testing.assert_allclose(numpy_normalizer(stats)(obs), expected, rtol=1e-6, atol=1e-6)
    empty = batch_obs_stats(4, batch[:0])
    np.testing.assert_array_equal(numpy_normalizer(empty)(obs), obs.astype(np.float32))


@pytest.mark.parametrize("counted", [0, 50])
def test_shaped_numpy_normalizer_gives_the_same_bits(counted):
    batch = jax.random.normal(jax.random.key(0), (50, 4)) * jnp.array([1.0, 10.0, 0.1, 0.0]) + 3
    normalizer = numpy_normalizer(batch_obs_stats(4, batch[:counted]))
    obs = np.asarray(jax.random.normal(jax.random.key(1), (16, 4))) * 20
    shaped = normalizer.shaped(obs.shape)
    assert all(array.shape == obs.shape for array in shaped)
    np.testing.assert_array_equal(shaped(obs), normalizer(obs))


def members(population):
    size = jax.tree.leaves(population)[0].shape[0]
    return [jax.tree.map(lambda leaf, i=i: leaf[i], population) for i in range(size)]


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


@pytest.fixture(scope="module")
def cartpole():
    env = gym_lib.make_env("CartPole-v1")
    policy = make_policy("linear", env.observation_space, env.action_space, zero_init=False)
    population = jax.vmap(policy.init)(jax.random.split(jax.random.key(0), 6))
    return policy, population


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

    seeds = gym_lib.episode_seeds(key, 6, 2)
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


def test_envs_side_by_side_and_unwrapped_give_each_members_own_episodes(cartpole):
    """A worker steps several envs in lock step, under gymnasium.make's bookkeeping
    wrappers: each episode must equal its member run alone in the wrapped env."""
    policy, population = cartpole
    params = jax.tree.map(np.asarray, population)
    stats = jax.tree.map(
        np.asarray, batch_obs_stats(4, np.random.default_rng(0).normal(size=(9, 4)))
    )
    rows = np.array([0, 1, 2, 3, 4, 5, 5, 0, 3, 1, 2])
    batch = gym_lib.episodes.EpisodeBatch(params, rows, rows + 10, np.arange(11) + 100, stats)
    wrapped = [gym_lib.make_env("CartPole-v1", max_episode_steps=30) for _ in range(4)]
    bare = [gym_lib.episodes.unwrap_bookkeeping(env) for env in wrapped]
    assert {limit for _, limit in bare} == {30}
    assert all(type(env) is type(wrapped[0].unwrapped) for env, _ in bare)
    alone = gym_lib.run_batch(wrapped[:1], policy.numpy_apply, batch)
    assert 30 in alone.lengths  # episodes end at the limit...
    assert alone.lengths.min() < 30  # ...and before it
    for envs, limit in ((wrapped, None), ([env for env, _ in bare], 30), (wrapped[:3], 30)):
        together = gym_lib.run_batch(envs, policy.numpy_apply, batch, limit)
        jax.tree.map(np.testing.assert_array_equal, together, alone)


def test_observations_are_reduced_in_groups_with_the_same_statistics(cartpole, monkeypatch):
    """A worker keeps the observations of at most ``REDUCE_EVERY`` finished episodes (and
    the running ones); reducing them in groups changes no number."""
    policy, population = cartpole
    params = jax.tree.map(np.asarray, population)
    rows = np.arange(6).repeat(3)
    batch = gym_lib.episodes.EpisodeBatch(params, rows, rows, np.arange(18) + 7, None)
    envs = [gym_lib.make_env("CartPole-v1") for _ in range(4)]
    whole = gym_lib.run_batch(envs, policy.numpy_apply, batch)
    held = []
    finish = gym_lib.episodes._Observations.finish

    def counting_finish(self, *args):
        finish(self, *args)
        held.append(len(self.finished))

    monkeypatch.setattr(gym_lib.episodes, "REDUCE_EVERY", 3)
    monkeypatch.setattr(gym_lib.episodes._Observations, "finish", counting_finish)
    grouped = gym_lib.run_batch(envs, policy.numpy_apply, batch)
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
    batch = gym_lib.episodes.EpisodeBatch(params, np.arange(3), np.arange(3), seeds, None)
    results = gym_lib.run_batch(envs, policy.numpy_apply, batch)

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
    assert gym_lib.episodes.unwrap_bookkeeping(env) == (env, None)
    assert gym_lib.episodes.unwrap_bookkeeping(env.unwrapped) == (env.unwrapped, None)


@pytest.mark.parametrize("start", [0, -3, 5])
def test_fast_action_check_answers_as_gymnasium(start):
    env = gym_lib.make_env("CartPole-v1").unwrapped
    env.action_space = gymnasium.spaces.Discrete(4, start=start)
    gym_lib.episodes.check_actions_fast(env)
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
        gym_lib.episodes.check_actions_fast(env)
        assert "contains" not in vars(space)


@pytest.mark.parametrize("episodes", [0, 1, 5, 1024, 1025, 5000])
def test_episode_queue_hands_out_every_episode_exactly_once(episodes):
    read_fd, write_fd = gym_lib.claims.open_queue()
    try:
        gym_lib.claims.put_episodes(write_fd, episodes)
        readers = [gym_lib.claims.Claims(read_fd), gym_lib.claims.Claims(read_fd)]
        taken = [[], []]
        while True:  # two readers taking turns, as two workers would
            got = [reader() for reader in readers]
            for mine, index in zip(taken, got, strict=True):
                if index is not None:
                    mine.append(index)
            if got == [None, None]:
                break
        assert sorted(taken[0] + taken[1]) == list(range(episodes))
        assert not set(taken[0]) & set(taken[1])
    finally:
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="workers sleep on sockets here")
def test_doorbell_wakes_a_worker_for_each_ring_not_for_messages():
    bell = gym_lib.doorbell.open_bell()
    parent_end, worker_end = (Connection(end.detach()) for end in socket.socketpair())
    doorbell = gym_lib.doorbell.Doorbell(bell[0], worker_end)

    def waiting() -> threading.Thread:
        thread = threading.Thread(target=doorbell.wait, daemon=True)
        thread.start()
        thread.join(0.2)
        return thread

    try:
        thread = waiting()
        parent_end.send("first")
        thread.join(0.2)
        assert thread.is_alive()  # a message alone does not wake it
        gym_lib.doorbell.ring(bell)
        thread.join(5.0)
        assert not thread.is_alive()
        assert worker_end.recv() == "first"
        # A worker back late finds the message there; the ring it missed wakes it later
        # with no message, and it sleeps on.
        parent_end.send("second")
        gym_lib.doorbell.ring(bell)
        doorbell.wait()
        assert worker_end.recv() == "second"
        thread = waiting()
        assert thread.is_alive()
        parent_end.send("third")
        gym_lib.doorbell.ring(bell)
        thread.join(5.0)
        assert not thread.is_alive()
        assert worker_end.recv() == "third"
        # The parent gone: it wakes, and the connection ends.
        thread = waiting()
        parent_end.close()
        os.close(bell[1])
        thread.join(5.0)
        assert not thread.is_alive()
        with pytest.raises(EOFError):
            worker_end.recv()
    finally:
        os.close(bell[0])
        worker_end.close()


def test_shared_arrays_read_back_as_written():
    fd = gym_lib.shared.open_file()
    try:
        rng = np.random.default_rng(0)
        trees = [
            {"w": rng.normal(size=(5, 3, 2)).astype(np.float32), "b": np.arange(7)},
            {"big": rng.normal(size=(100, 1000)), "flag": np.array(True), "none": np.zeros(0)},
            (np.asfortranarray(rng.normal(size=(4, 6))), [np.int8(3) * np.ones((2, 2), np.int8)]),
        ]
        for tree in trees:  # the file grows, then holds a smaller tree
            layout = gym_lib.shared.write(fd, tree)
            read = gym_lib.shared.read(fd, layout)
            assert jax.tree.structure(read) == jax.tree.structure(tree)
            for got, want in zip(jax.tree.leaves(read), jax.tree.leaves(tree), strict=True):
                assert got.dtype == want.dtype
                assert got.shape == want.shape
                np.testing.assert_array_equal(got, want)
                assert not got.flags.writeable
            assert all(offset % 64 == 0 for offset, _, _ in layout.leaves)
    finally:
        os.close(fd)


def test_common_random_numbers_share_seeds():
    seeds = gym_lib.episode_seeds(jax.random.key(0), 3, 4, common_random_numbers=True)
    assert (seeds == seeds[0]).all()
    assert len(set(seeds[0])) == 4
    independent = gym_lib.episode_seeds(jax.random.key(0), 3, 4)
    assert len(set(independent.ravel())) == 12


def test_seed_table_traced_gives_episode_seeds():
    key = jax.random.key(2)
    for shared in (False, True):

        @jax.jit
        def traced(key, first, shared=shared):
            return gym_lib.seed_table(key, 3, 2, common_random_numbers=shared, first_member=first)

        np.testing.assert_array_equal(
            traced(key, 5),
            gym_lib.episode_seeds(key, 3, 2, common_random_numbers=shared, first_member=5),
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
    seeds = gym_lib.episode_seeds(jax.random.key(3), 1, 3)[0]
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


@pytest.fixture
def misbehaving_envs(monkeypatch):
    """Makes ``gym_test_envs`` importable here and in worker processes."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.syspath_prepend(str(TESTS))


def assert_stopped(pool):
    assert pool._workers == []


def worker_processes(pool):
    return [process for process, _ in pool._workers]


@pytest.mark.usefixtures("misbehaving_envs")
def test_env_error_names_env_member_and_seed_and_stops_the_workers():
    spec = WorkerSpec("gym_test_envs:RaisingEnv-v0", "linear", {})
    pool = RolloutPool(spec, 2)
    processes = worker_processes(pool)
    params = {"w": np.zeros((3, 2, 2), np.float32), "b": np.zeros((3, 2), np.float32)}
    with pytest.raises(
        RolloutError,
        match=r"RaisingEnv-v0: FloatingPointError: simulation diverged "
        r"\(member (0, seed 11|1, seed 12|2, seed 13)\)",
    ):
        pool.run(params, [0, 1, 2], [11, 12, 13])
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)
    with pytest.raises(RolloutError, match="closed"):
        pool.run(params, [0], [1])


@pytest.mark.usefixtures("misbehaving_envs")
def test_dead_worker_is_an_error_not_a_hang():
    pool = RolloutPool(WorkerSpec("gym_test_envs:DyingEnv-v0", "linear", {}), 2)
    processes = worker_processes(pool)
    params = {"w": np.zeros((2, 2, 2), np.float32), "b": np.zeros((2, 2), np.float32)}
    start = time.monotonic()
    with pytest.raises(
        RolloutError,
        match=r"DyingEnv-v0: a rollout worker died \(exit code -9\) while running "
        r"member (0 seed 21|1 seed 22)",
    ):
        pool.run(params, [0, 1], [21, 22])
    assert time.monotonic() - start < 30
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed():
    """A parent killed between calls (no ``close``) leaves no worker behind: its workers
    sleep on the doorbell, and its end closing wakes them."""
    script = (
        "import os, numpy as np\n"
        "from es_toolkit.gym import RolloutPool, WorkerSpec\n"
        "pool = RolloutPool(WorkerSpec('CartPole-v1', 'linear', {}), 2)\n"
        "pool.run({'w': np.zeros((2, 4, 2), np.float32), 'b': np.zeros((2, 2), np.float32)},"
        " [0, 1], [1, 2])\n"
        "print(*(process.pid for process, _ in pool._workers), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert parent.returncode == -9, parent.stderr
    pids = [int(pid) for pid in parent.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (an exited child of a dead parent is
    reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_bad_episode_lists_are_refused_and_the_pool_stays_open(cartpole):
    _, population = cartpole
    with RolloutPool(WorkerSpec("CartPole-v1", "linear", {}), 1) as pool:
        with pytest.raises(ValueError, match="1-D of one length"):
            pool.run(population, [0, 1], [5])
        with pytest.raises(ValueError, match="at least one episode"):
            pool.run(population, [], [])
        assert pool.run(population, [2], [5]).lengths[0] > 0


def test_ctrl_c_stops_every_worker(cartpole, monkeypatch):
    _, population = cartpole
    pool = RolloutPool(WorkerSpec("CartPole-v1", "linear", {}), 2)
    processes = worker_processes(pool)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("es_toolkit.gym.pool.wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gym_lib.evaluate_population(pool, jax.random.key(0), population)
    assert_stopped(pool)
    assert all(process.poll() is not None for process in processes)


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


GYM_TINY = TrainConfig(
    env="CartPole-v1",
    backend="gymnasium",
    population_size=8,
    num_generations=4,
    eval_every=2,
    eval_episodes=3,
    final_eval_episodes=3,
    sigma=0.1,
    learning_rate=0.05,
)


def test_gymnasium_training_does_not_depend_on_workers_and_resumes_exactly(tmp_path):
    one = train(dataclasses.replace(GYM_TINY, num_workers=1), tmp_path / "one", progress=False)
    two = train(dataclasses.replace(GYM_TINY, num_workers=2), tmp_path / "two", progress=False)
    jax.tree.map(np.testing.assert_array_equal, one.state, two.state)
    assert int(one.state.env_steps) > 0
    half = dataclasses.replace(GYM_TINY, num_generations=2)
    train(half, tmp_path / "resumed", progress=False)
    resumed = train(GYM_TINY, tmp_path / "resumed", resume=True, progress=False)
    jax.tree.map(np.testing.assert_array_equal, one.state, resumed.state)
    assert one.final_return_mean == resumed.final_return_mean


def test_train_and_evaluate_commands_on_gymnasium_with_a_gif(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "es_toolkit.cli"]
    subprocess.run(
        [
            *command,
            "train",
            "--backend",
            "gymnasium",
            "--population",
            "8",
            "--generations",
            "2",
            "--eval-every",
            "2",
            "--eval-episodes",
            "2",
            "--final-eval-episodes",
            "2",
            "--num-workers",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = json.loads((out / "result.json").read_text())
    assert summary["config"]["backend"] == "gymnasium"
    gif = tmp_path / "episode.gif"
    evaluated = subprocess.run(
        [*command, "evaluate", str(out / "checkpoint.npz"), "--episodes", "2", "--gif", str(gif)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "CartPole-v1 (gymnasium): mean return" in evaluated.stdout
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames > 5
    refused = subprocess.run(
        [*command, "train", "--env", "Blackjack-v1", "--out", str(tmp_path / "bj")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2
    assert "no policy for this observation space: Tuple" in refused.stderr
