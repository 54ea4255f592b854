"""The JAX-native environments against Gymnasium's own, transition by transition.

The parity test follows gymnax's ``tests/classic_control/test_gym_env.py``: before each
step, our state is rebuilt from the Gymnasium env's physical state, both take the same
action, and obs, reward, terminated and truncated must agree. Gymnasium computes in float64
(MountainCarContinuous stores its state as float32 after each step), we in float32, so one
step agrees to float32 rounding, checked as ``|ours - gym| <= 1e-5 + 1e-5 |gym|``. Largest
differences seen: obs 1.2e-7 (CartPole, MountainCar), 1e-6 (Acrobot), 5e-6 (Pendulum: its
theta is not wrapped and reaches |theta| <= pi + 200 * 8 * 0.05 < 128, where float32's
spacing is 7.6e-6); reward 2.8e-5 on Pendulum's cost of up to 16 (2e-6 relative), 1.5e-6
on MountainCarContinuous, exact on the others.

Only the physical state is re-synced; our ``time`` counts on from ``reset`` and its
``truncated`` is compared with Gymnasium's ``TimeLimit`` wrapper (``gym.make``).

Episodes alternate a heuristic policy and a uniformly random one, both mixed with random
actions, so that every env sees both a termination and a truncation where it has them.
Each env's step is jitted once and reused.
"""

import dataclasses
import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

import es_toolkit.envs as envs  # noqa: E402
from es_toolkit.envs import make, registered  # noqa: E402

IDS = ("Acrobot-v1", "CartPole-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1")
TOL = {"rtol": 1e-5, "atol": 1e-5}

# A heuristic that reaches the goal (or, for CartPole, the time limit); obs -> action.
HEURISTIC = {
    "CartPole-v1": lambda o: int(o[2] + 0.5 * o[3] + 0.05 * o[0] + 0.2 * o[1] > 0),
    "Acrobot-v1": lambda o: 0 if o[4] > 0 else 2,  # pumps energy: reaches the goal
    "MountainCar-v0": lambda o: 2 if o[1] > 0 else 0,
    "MountainCarContinuous-v0": lambda o: np.array([1.0 if o[1] > 0 else -1.0], np.float32),
    "Pendulum-v1": lambda o: np.array([2.0 if o[2] > 0 else -2.0], np.float32),  # spins
}
CAN_TERMINATE = {"Acrobot-v1", "CartPole-v1", "MountainCar-v0", "MountainCarContinuous-v0"}
# The physical state right after reset: (low, high) of each variable.
RESET_BOUNDS = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "Pendulum-v1": ([-np.pi, -1.0], [np.pi, 1.0]),
}


@functools.cache
def jitted(env_id):
    """``(env, jit(reset), jit(step))``, compiled once per env for the whole module."""
    env = make(env_id)
    return env, jax.jit(env.reset), jax.jit(env.step)


def synced(state, gym_state):
    """Our state with its physical fields set from Gymnasium's (float64 -> float32)."""
    fields = [f.name for f in dataclasses.fields(state) if f.name != "time"]
    values = np.asarray(gym_state, np.float64)
    return dataclasses.replace(
        state, **{n: jnp.float32(v) for n, v in zip(fields, values, strict=True)}
    )


def random_action(space, rng):
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.uniform(space.low, space.high).astype(np.float32)


def test_registry_matches_gymnasium_time_limits():
    assert registered() == tuple(sorted(IDS))
    for env_id in IDS:
        env = make(env_id)
        assert env.id == env_id
        assert env.default_params.max_steps_in_episode == gym.spec(env_id).max_episode_steps


def test_make_unknown_id_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"'Nope'.*available: Acrobot-v1, CartPole-v1"):
        make("Nope")


@pytest.mark.parametrize("env_id", IDS)
def test_transitions_match_gymnasium(env_id):
    env, reset, step = jitted(env_id)
    params = env.default_params
    gym_env = gym.make(env_id)  # TimeLimit(...(unwrapped)) for the truncation flag
    assert gym_env.spec.max_episode_steps == params.max_steps_in_episode
    rng = np.random.default_rng(0)
    total, episode, ends = 0, 0, set()
    while total < 500 or episode < 3:
        gym_obs, _ = gym_env.reset(seed=episode)
        _, state = reset(jax.random.key(episode), params)
        heuristic = episode % 2 == 0
        for t in range(params.max_steps_in_episode):
            if heuristic and rng.random() > 0.2:
                action = HEURISTIC[env_id](gym_obs)
            else:
                action = random_action(gym_env.action_space, rng)
            state = synced(state, gym_env.unwrapped.state)
            gym_obs, gym_reward, gym_term, gym_trunc, _ = gym_env.step(action)
            obs, state, reward, term, trunc, info = step(
                jax.random.key(t), state, jnp.asarray(action), params
            )
            where = f"{env_id} episode {episode} step {t}"
            np.testing.assert_allclose(obs, gym_obs, **TOL, err_msg=where)
            np.testing.assert_allclose(reward, gym_reward, **TOL, err_msg=where)
            assert (bool(term), bool(trunc)) == (gym_term, gym_trunc), where
            assert int(state.time) == t + 1
            assert info == {}
            total += 1
            if gym_term or gym_trunc:
                ends.add("terminated" if gym_term else "truncated")
                break
        episode += 1
    assert ends == ({"terminated", "truncated"} if env_id in CAN_TERMINATE else {"truncated"})


@pytest.mark.parametrize("env_id", IDS)
def test_reset_and_step_jit_and_vmap_over_keys(env_id):
    env, _, step = jitted(env_id)
    params = env.default_params
    keys = jax.random.split(jax.random.key(1), 256)
    obs, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    space = env.observation_space(params)
    assert obs.shape == (256, *space.shape)
    assert obs.dtype == jnp.float32
    assert bool(jnp.all(jax.vmap(space.contains)(obs)))
    # The reset distribution: inside Gymnasium's ranges and spread over them.
    physical = np.stack(
        [getattr(states, f.name) for f in dataclasses.fields(states) if f.name != "time"], -1
    )
    low, high = np.array(RESET_BOUNDS[env_id])
    assert np.all(physical >= low)
    assert np.all(physical <= high)
    np.testing.assert_allclose(physical.min(0), low, atol=0.05 * np.max(high - low))
    np.testing.assert_allclose(physical.max(0), high, atol=0.05 * np.max(high - low))
    assert np.all(np.asarray(states.time) == 0)

    actions = jax.jit(jax.vmap(env.action_space(params).sample))(keys)
    out = jax.jit(jax.vmap(step, in_axes=(0, 0, 0, None)))(keys, states, actions, params)
    assert out[0].shape == obs.shape
    assert out[2].shape == out[3].shape == out[4].shape == (256,)
    # The batched step agrees with the unbatched one.
    one = step(*jax.tree.map(lambda x: x[3], (keys, states, actions)), params)
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(got[3], want, rtol=1e-6, atol=1e-6)


def test_truncation_is_independent_of_termination():
    """CartPole at step 499 of 500 with the pole past 12 degrees: both flags are set."""
    env, _, step = jitted("CartPole-v1")
    params = env.default_params
    _, state = env.reset(jax.random.key(0), params)
    state = dataclasses.replace(state, theta=jnp.float32(0.3), time=jnp.int32(499))
    _, state, reward, term, trunc, _ = step(jax.random.key(0), state, 1, params)
    assert bool(term)
    assert bool(trunc)
    assert float(reward) == 1.0
    assert int(state.time) == 500
    state = dataclasses.replace(state, theta=jnp.float32(0.0), time=jnp.int32(10))
    assert not any(map(bool, step(jax.random.key(0), state, 1, params)[3:5]))


@pytest.mark.parametrize(
    ("env_id", "options"),
    [
        ("CartPole-v1", {"sutton_barto_reward": True, "kinematics_integrator": "semi"}),
        ("Acrobot-v1", {"book_or_nips": "nips"}),
    ],
)
def test_non_default_static_options_match_gymnasium(env_id, options):
    """The code paths picked by static fields, against Gymnasium's attributes of the
    same names (its ``kinematics_integrator`` takes anything but "euler" as semi-implicit)."""
    env, reset, _ = jitted(env_id)
    params = dataclasses.replace(env.default_params, **options)
    step = jax.jit(env.step)
    gym_env = gym.make(env_id).unwrapped
    for name, value in options.items():
        setattr(gym_env, "_" + name if name == "sutton_barto_reward" else name, value)
    rng = np.random.default_rng(0)
    _, state = reset(jax.random.key(0), params)
    for seed in range(3):
        gym_env.reset(seed=seed)
        for _ in range(100):
            action = int(rng.integers(gym_env.action_space.n))
            state = synced(state, gym_env.state)
            gym_obs, gym_reward, gym_term, *_ = gym_env.step(action)
            obs, state, reward, term, *_ = step(jax.random.key(0), state, action, params)
            np.testing.assert_allclose(obs, gym_obs, **TOL)
            np.testing.assert_allclose(reward, gym_reward, **TOL)
            assert bool(term) == gym_term
            if gym_term:
                break


@pytest.mark.parametrize(
    ("env_id", "action"), [("MountainCarContinuous-v0", 3.0), ("Pendulum-v1", -5.0)]
)
def test_out_of_range_continuous_actions_as_gymnasium(env_id, action):
    """Clipped where Gymnasium clips; MountainCarContinuous's cost uses the raw action."""
    env, reset, step = jitted(env_id)
    gym_env = gym.make(env_id).unwrapped
    gym_env.reset(seed=0)
    _, state = reset(jax.random.key(0), env.default_params)
    state = synced(state, gym_env.state)
    gym_obs, gym_reward, *_ = gym_env.step(np.array([action], np.float32))
    obs, _, reward, *_ = step(jax.random.key(0), state, jnp.array([action]), env.default_params)
    np.testing.assert_allclose(obs, gym_obs, **TOL)
    np.testing.assert_allclose(reward, gym_reward, **TOL)


@pytest.mark.parametrize(
    ("env_id", "action", "error", "message"),
    [
        ("CartPole-v1", jnp.array([1]), ValueError, r"action must be an integer scalar"),
        ("Acrobot-v1", 1.0, TypeError, r"action must be an integer scalar.*float32"),
        ("Pendulum-v1", 0.5, ValueError, r"action must be a float array of shape \(1,\)"),
        ("MountainCarContinuous-v0", jnp.array([1]), TypeError, r"float array.*int32"),
    ],
)
def test_bad_action_raises_at_trace_time(env_id, action, error, message):
    env, reset, step = jitted(env_id)
    _, state = reset(jax.random.key(0), env.default_params)
    with pytest.raises(error, match=message):
        step(jax.random.key(0), state, action, env.default_params)


def test_discrete_actions_accept_any_integer_dtype():
    """Cast to int32, so an unsigned 0 cannot wrap around in MountainCar's ``action - 1``."""
    env = make("MountainCar-v0")
    for action in (0, np.int64(0), np.int32(0), np.uint8(0), jnp.array(0, jnp.uint32)):
        checked = env.check_action(action)
        assert checked.shape == ()
        assert checked.dtype == jnp.int32


def test_spaces():
    box = envs.Box(-1.0, [1.0, np.inf], (2,))
    assert box.low.dtype == np.float32
    assert box.high[1] == np.inf
    assert bool(box.contains(jnp.array([0.5, 1e9])))
    assert not bool(box.contains(jnp.zeros(3)))
    assert not bool(box.contains(jnp.array([-2.0, 0.0])))
    samples = jax.jit(jax.vmap(box.sample))(jax.random.split(jax.random.key(0), 64))
    assert bool(jnp.all(jax.vmap(box.contains)(samples)))
    assert box == envs.Box(-1.0, [1.0, np.inf], (2,))
    assert hash(box) == hash(envs.Box(-1.0, [1.0, np.inf], (2,)))
    discrete = envs.Discrete(3)
    assert bool(discrete.contains(2))
    assert not bool(discrete.contains(3))
    assert not bool(discrete.contains(1.0))
    assert not bool(discrete.contains(jnp.array([1])))
    drawn = jax.jit(jax.vmap(discrete.sample))(jax.random.split(jax.random.key(0), 64))
    assert set(np.asarray(drawn).tolist()) == {0, 1, 2}


def test_docstring_example():
    assert doctest.testmod(envs).failed == 0
