"""Policies and observation normalization.

Spaces are small duck-typed dataclasses made here (the envs package is not imported). The
heads are checked against their documented formulas, the statistics against NumPy's mean
and variance in float64 of the concatenated data.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from es_toolkit.policies import (
    ACTIVATIONS,
    ObsStats,
    Policy,
    batch_obs_stats,
    init_obs_stats,
    linear_policy,
    make_policy,
    merge_obs_stats,
    merge_stacked_obs_stats,
    mlp_policy,
    normalize,
    update_obs_stats,
)
from es_toolkit.strategies import open_es


@dataclasses.dataclass(frozen=True)
class Box:
    low: np.ndarray
    high: np.ndarray
    shape: tuple
    dtype: type = np.float32


@dataclasses.dataclass(frozen=True)
class Discrete:
    n: int


@dataclasses.dataclass(frozen=True)
class OffsetDiscrete:
    """Like Gymnasium's ``Discrete(n, start)``."""

    n: int
    start: int
    shape: tuple = ()


def box(low, high, shape=None):
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    shape = low.shape if shape is None else shape
    return Box(np.broadcast_to(low, shape), np.broadcast_to(high, shape), shape)


OBS = box(-np.inf, np.inf, (4,))
DISCRETE = Discrete(3)
BOX = box([-0.3, 0.0, -2.0], [0.7, 1e-3, 5.0])
BOX_2D = box(-1.0, 2.0, (2, 3))
BOX_SCALAR = box(-2.0, 2.0, ())
KEY = jax.random.key(0)
X = jnp.array([0.5, -1.0, 2.0, 0.1])


def random_params(policy, seed=0, scale=1.0):
    """Params far from the initial ones: every leaf replaced by N(0, scale^2) noise.

    Drawn with NumPy, so no test compiles a random kernel per parameter shape.
    """
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), jnp.float32),
        jax.eval_shape(policy.init, KEY),
    )


def act(policy, params, obs=X):
    """``policy.apply`` jitted: one compilation instead of one per operation and shape."""
    return jax.jit(policy.apply)(params, obs)


def init(policy, key=KEY):
    """``policy.init`` jitted."""
    return jax.jit(policy.init)(key)


KINDS = ["linear", "mlp"]
ACTION_SPACES = {
    "discrete": (DISCRETE, (), jnp.int32),
    "box": (BOX, (3,), jnp.float32),
    "box_2d": (BOX_2D, (2, 3), jnp.float32),
    "box_scalar": (BOX_SCALAR, (), jnp.float32),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("space_name", sorted(ACTION_SPACES))
def test_action_shape_and_dtype(kind, space_name):
    space, shape, dtype = ACTION_SPACES[space_name]
    policy = make_policy(kind, OBS, space)
    params = random_params(policy)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(init(policy)))
    action = act(policy, params)
    assert action.shape == shape
    assert action.dtype == dtype
    if space_name == "discrete":
        assert 0 <= int(action) < DISCRETE.n


@pytest.mark.parametrize("kind", KINDS)
def test_box_actions_stay_within_bounds(kind):
    """Huge params and extreme observations saturate tanh; the action still lies in bounds."""
    policy = make_policy(kind, OBS, BOX)
    obs = np.concatenate(
        [
            [[1e6, -1e6, 1e30, -1e30], [0.0, 0.0, 0.0, 0.0]],
            10.0 * np.random.default_rng(1).standard_normal((30, 4)),
        ]
    ).astype(np.float32)
    apply = jax.jit(jax.vmap(jax.vmap(policy.apply, (None, 0)), (0, None)))
    for scale in (1.0, 1e3):
        params = jax.tree.map(
            lambda *x: jnp.stack(x), *[random_params(policy, seed, scale) for seed in range(8)]
        )
        actions = np.asarray(apply(params, obs))
        assert np.all(np.isfinite(actions))
        assert np.all(actions >= BOX.low)
        assert np.all(actions <= BOX.high)
        assert np.any(actions == BOX.high) or scale == 1.0  # saturated at the upper bound


def test_box_head_follows_the_documented_squashing():
    policy = linear_policy(OBS, BOX_2D)
    b = jnp.linspace(-3.0, 3.0, 6)
    action = act(policy, {"w": jnp.zeros((4, 6)), "b": b})
    expected = -1.0 + (np.tanh(np.asarray(b).reshape(2, 3)) + 1.0) / 2.0 * 3.0
    np.testing.assert_allclose(action, expected, rtol=1e-6)


def test_unbounded_box_dimensions_pass_through():
    space = box([-1.0, -np.inf], [1.0, np.inf])
    policy = linear_policy(OBS, space)
    action = act(policy, {"w": jnp.zeros((4, 2)), "b": jnp.array([20.0, -7.5])})
    np.testing.assert_allclose(action, [1.0, -7.5])


def test_argmax_head_picks_the_largest_logit():
    policy = linear_policy(OBS, Discrete(5))
    apply = jax.jit(policy.apply)
    w = jnp.zeros((4, 5))
    for logits in ([0.1, 3.0, -1.0, 2.9, 0.0], [-5.0, -4.0, -3.0, -2.0, -1.0], [7.0, 0, 0, 0, 0]):
        action = apply({"w": w, "b": jnp.array(logits)}, X)
        assert int(action) == int(np.argmax(logits))
    offset = linear_policy(OBS, OffsetDiscrete(3, start=-1))  # actions -1, 0, 1
    assert int(act(offset, {"w": jnp.zeros((4, 3)), "b": jnp.array([0.0, 0.0, 1.0])})) == 1


@pytest.mark.parametrize("bias", [True, False])
def test_zero_init_linear_takes_the_middle_action(bias):
    obs = jnp.array([100.0, -3.0, 0.5, 7.0])
    policy = linear_policy(OBS, BOX, bias=bias)
    params = init(policy)
    assert sorted(params) == (["b", "w"] if bias else ["w"])
    np.testing.assert_allclose(act(policy, params, obs), (BOX.low + BOX.high) / 2, atol=1e-7)
    discrete = linear_policy(OBS, DISCRETE, bias=bias)
    assert int(act(discrete, init(discrete), obs)) == 0


def test_linear_random_init_is_not_zero_and_depends_on_the_key():
    policy = linear_policy(OBS, BOX, zero_init=False)
    w0, w1 = init(policy, jax.random.key(0))["w"], init(policy, jax.random.key(1))["w"]
    assert w0.shape == (4, 3)
    assert np.all(w0 != 0)
    assert not np.allclose(w0, w1)


def test_mlp_param_shapes_and_init_scale():
    policy = mlp_policy(OBS, BOX, hidden_sizes=(5, 7), output_init_scale=0.01)
    params = init(policy)
    shapes = [(layer["w"].shape, layer["b"].shape) for layer in params]
    assert shapes == [((4, 5), (5,)), ((5, 7), (7,)), ((7, 3), (3,))]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    np.testing.assert_allclose(np.linalg.norm(params[0]["w"], axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(params[-1]["w"], axis=0), 0.01, rtol=1e-5)
    assert all(np.all(layer["b"] == 0) for layer in params)
    # A small output layer starts near the middle action.
    np.testing.assert_allclose(act(policy, params), (BOX.low + BOX.high) / 2, atol=0.05)
    no_hidden = jax.eval_shape(mlp_policy(OBS, DISCRETE, hidden_sizes=()).init, KEY)
    assert [layer["w"].shape for layer in no_hidden] == [(4, 3)]


@pytest.mark.parametrize("activation", [*sorted(ACTIVATIONS), jnp.sin])
def test_mlp_activations(activation):
    policy = mlp_policy(OBS, BOX, hidden_sizes=(6,), activation=activation)
    params = random_params(policy)
    fn = ACTIVATIONS.get(activation, activation) if isinstance(activation, str) else activation
    (w0, b0), (w1, b1) = [(np.asarray(layer["w"]), np.asarray(layer["b"])) for layer in params]
    y = np.asarray(fn(jnp.asarray(np.asarray(X) @ w0 + b0))) @ w1 + b1
    expected = BOX.low + (np.tanh(y) + 1) / 2 * (BOX.high - BOX.low)
    np.testing.assert_allclose(act(policy, params), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_under_jit_and_vmap(kind):
    policy = make_policy(kind, OBS, BOX)
    params = random_params(policy)
    batch = jnp.asarray(np.random.default_rng(2).standard_normal((5, 4)), jnp.float32)
    jitted = jax.jit(policy.apply)
    expected = np.stack([jitted(params, obs) for obs in batch])
    np.testing.assert_allclose(policy.apply(params, batch[0]), expected[0], rtol=1e-6, atol=1e-6)
    batched = jax.jit(jax.vmap(policy.apply, in_axes=(None, 0)))(params, batch)
    np.testing.assert_allclose(batched, expected, rtol=1e-5, atol=1e-5)
    population = jax.tree.map(
        lambda *x: jnp.stack(x), *[random_params(policy, i) for i in range(3)]
    )
    over_params = jax.vmap(policy.apply, in_axes=(0, None))(population, batch[0])
    assert over_params.shape == (3, 3)


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match=r"unknown policy kind 'cnn'; choose one of linear, mlp"):
        make_policy("cnn", OBS, BOX)


@pytest.mark.parametrize(
    "space",
    [Discrete(4), box(0.0, 1.0, (8, 8)), box(0.0, 1.0, ()), {"spaces": {"a": OBS}}, None],
    ids=["discrete", "image", "scalar", "dict", "none"],
)
def test_unsupported_observation_space_is_named(space):
    with pytest.raises(ValueError, match="no policy for this observation space") as error:
        linear_policy(space, BOX)
    assert repr(space)[:20] in str(error.value)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (object(), "no policy for this action space"),
        (box([-1.0, 0.0], [1.0, np.inf]), "bounded on both sides or on neither"),
        (box([1.0], [-1.0]), "low <= high"),
        (Discrete(0), "n >= 1"),
    ],
)
def test_bad_action_space(space, message):
    with pytest.raises(ValueError, match=message):
        mlp_policy(OBS, space)


def test_bad_mlp_options():
    with pytest.raises(ValueError, match="unknown activation 'sigmoidal'; choose one of elu"):
        mlp_policy(OBS, BOX, activation="sigmoidal")
    with pytest.raises(TypeError, match="hidden_sizes must be a sequence"):
        mlp_policy(OBS, BOX, hidden_sizes=32)
    with pytest.raises(ValueError, match=r"hidden_sizes\[1\] must be an int >= 1, got 0"):
        mlp_policy(OBS, BOX, hidden_sizes=(32, 0))


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_observation_shape_fails_at_trace_time(kind):
    policy = make_policy(kind, OBS, DISCRETE)
    params = init(policy)
    with pytest.raises(ValueError, match=r"observation has shape \(3,\).*expects shape \(4,\)"):
        jax.jit(policy.apply)(params, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"\(2, 4\).*jax.vmap\(policy.apply"):
        policy.apply(params, jnp.zeros((2, 4)))


def wrapped_policy_works_with_a_strategy(policy, obs):
    """The toolkit contract: a strategy perturbs the params pytree, apply runs vmapped."""
    es = open_es(population_size=4, sigma=0.1)

    @jax.jit
    def generation(key, state):
        members = es.ask(key, state)
        actions = jax.vmap(policy.apply, in_axes=(0, None))(members, obs)
        state, _ = es.tell(key, state, actions.astype(jnp.float32).reshape(4, -1).sum(axis=1))
        return actions, state

    actions, _ = generation(jax.random.key(3), es.init(policy.init(KEY)))
    return actions


def test_any_pytree_with_a_pure_apply_is_a_policy():
    def init(key):
        return {"layer": {"kernel": jax.random.normal(key, (4, 2))}, "scale": jnp.ones(())}

    def apply(params, obs):
        return jnp.tanh(params["scale"] * obs @ params["layer"]["kernel"])

    actions = wrapped_policy_works_with_a_strategy(Policy(init, apply), X)
    assert actions.shape == (4, 2)


def test_an_equinox_module_wraps_as_a_policy():
    eqx = pytest.importorskip("equinox")

    def build(key):
        return eqx.nn.MLP(in_size=4, out_size=3, width_size=8, depth=1, key=key)

    _, static = eqx.partition(build(KEY), eqx.is_inexact_array)

    def init(key):
        return eqx.partition(build(key), eqx.is_inexact_array)[0]

    def apply(params, obs):
        return jnp.argmax(eqx.combine(params, static)(obs)).astype(jnp.int32)

    actions = wrapped_policy_works_with_a_strategy(Policy(init, apply), X)
    assert actions.shape == (4,)
    assert actions.dtype == jnp.int32


# Observation statistics.

SHAPE = (3,)
# Jitted once here: op-by-op dispatch would compile every operation for every shape.
update = jax.jit(update_obs_stats)
merge = jax.jit(merge_obs_stats)


def observations(seed, n, shape=SHAPE):
    """Offset, scaled data: a naive sum-of-squares variance would lose digits on it."""
    noise = np.random.default_rng(seed).standard_normal((n, *shape))
    return jnp.asarray(100.0 + 3.0 * noise * np.arange(1.0, 1.0 + shape[-1]), jnp.float32)


def assert_stats_match(stats, data):
    data = np.asarray(data, np.float64)
    assert float(stats.count) == len(data)
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.m2) / len(data), data.var(axis=0), rtol=1e-4)


def test_update_then_merge_matches_numpy():
    a, b = observations(1, 50), observations(2, 70)
    stats_a = update_obs_stats(init_obs_stats(SHAPE), a)  # once without jit
    stats_b = update(init_obs_stats(3), b)
    assert_stats_match(stats_a, a)
    merged = merge(stats_a, stats_b)
    both = np.concatenate([a, b])
    assert_stats_match(merged, both)
    assert_stats_match(update(stats_a, b), both)
    np.testing.assert_allclose(merged.var, np.var(np.asarray(both, np.float64), axis=0), rtol=1e-4)
    assert merged.shape == SHAPE
    assert merged.count.shape == ()
    for empty in (init_obs_stats(SHAPE), batch_obs_stats(SHAPE, a[:0])):
        assert_stats_match(merge(empty, stats_a), a)
        assert_stats_match(merge(stats_a, empty), a)


def test_merging_is_associative_and_order_independent():
    """Five partial statistics merged in several orders and groupings agree with NumPy."""
    chunks = [observations(i, n) for i, n in enumerate([1, 9, 40, 3, 27])]
    parts = [update(init_obs_stats(SHAPE), chunk) for chunk in chunks]
    data = np.concatenate(chunks)
    left = parts[0]
    for part in parts[1:]:
        left = merge(left, part)
    right = parts[-1]
    for part in reversed(parts[:-1]):
        right = merge(part, right)
    tree = merge(merge(parts[3], parts[0]), merge(parts[4], merge(parts[2], parts[1])))
    stacked = jax.jit(merge_stacked_obs_stats)(jax.tree.map(lambda *x: jnp.stack(x), *parts))
    for stats in (left, right, tree, stacked):
        assert_stats_match(stats, data)
        np.testing.assert_allclose(stats.m2, left.m2, rtol=1e-5)


def test_population_statistics_from_vmapped_members():
    """Each member summarizes its own (masked) episodes; the merge is over all of them."""
    episodes = observations(4, 4 * 6).reshape(4, 6, 3)
    mask = jnp.arange(6)[None, :] < jnp.array([6, 2, 0, 5])[:, None]
    per_member = jax.vmap(lambda x, m: batch_obs_stats(SHAPE, x, m))(episodes, mask)
    merged = jax.jit(merge_stacked_obs_stats)(per_member)
    assert_stats_match(merged, np.asarray(episodes)[np.asarray(mask)])


def test_masked_rows_are_ignored():
    data = observations(5, 12).reshape(3, 4, 3)
    mask = jnp.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], jnp.float32)
    poisoned = jnp.where(mask[..., None] > 0, data, jnp.nan).at[0, 3, 1].set(jnp.inf)
    stats = update(init_obs_stats(SHAPE), poisoned, mask)
    assert_stats_match(stats, np.asarray(data)[np.asarray(mask) > 0])
    as_bool = update(init_obs_stats(SHAPE), poisoned, mask > 0)
    np.testing.assert_array_equal(as_bool.m2, stats.m2)
    nothing = update(init_obs_stats(SHAPE), poisoned, jnp.zeros((3, 4)))
    assert float(nothing.count) == 0
    assert np.all(np.isfinite(nothing.m2))


def test_normalize_standardizes_and_clips():
    data = observations(6, 500)
    stats = update(init_obs_stats(SHAPE), data)
    out = jax.jit(normalize)(stats, data)
    assert out.shape == data.shape
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-3)  # no sample is 5 sd out
    extreme = jnp.array([1e6, -1e6, 100.0])
    np.testing.assert_allclose(normalize(stats, extreme), [5.0, -5.0, 0.0], atol=0.1)
    np.testing.assert_allclose(normalize(stats, extreme, clip=2.0)[:2], [2.0, -2.0])
    assert float(normalize(stats, extreme, clip=None)[0]) > 1e4
    var = np.asarray(stats.m2, np.float64) / 500
    expected = (np.asarray(data[0], np.float64) - stats.mean) / np.sqrt(var + 1e-8)
    np.testing.assert_allclose(normalize(stats, data[0]), expected, rtol=1e-5)


def test_normalize_without_observations_is_the_identity():
    obs = jnp.array([1e3, -2.0, 0.5])
    np.testing.assert_array_equal(normalize(init_obs_stats(SHAPE), obs), obs)


def test_normalization_shape_errors():
    stats = init_obs_stats(SHAPE)
    with pytest.raises(ValueError, match=r"observations must have shape .*got \(5, 4\)"):
        update_obs_stats(stats, jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"mask must have the batch shape \(5,\)"):
        update_obs_stats(stats, jnp.zeros((5, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"statistics are for shape \(3,\)"):
        normalize(stats, jnp.zeros(4))
    with pytest.raises(ValueError, match="clip must be positive"):
        normalize(stats, jnp.zeros(3), clip=-1.0)


def test_stats_are_a_pytree_that_policies_use():
    """The statistics jit, and feed a policy: ``apply(params, normalize(stats, obs))``."""
    policy = linear_policy(OBS, DISCRETE, zero_init=False)
    stats = update(init_obs_stats(4), observations(7, 20, (4,)))
    assert isinstance(jax.tree.map(lambda x: x, stats), ObsStats)
    action = jax.jit(lambda p, s, o: policy.apply(p, normalize(s, o)))(init(policy), stats, X)
    assert action.dtype == jnp.int32
