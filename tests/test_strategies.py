"""Evolution strategies: one shared contract test for all, then an oracle per algorithm.

The contract every strategy keeps: pure ``init/ask/tell`` that work under ``jit`` and
inside ``lax.scan``, on any pytree, chunked or not, with fitness higher-is-better and
non-finite fitness ranked worst. The oracles are independent of ``weighted_sum``: OpenES
against ``jax.grad`` of the perturbed function, SNES/PGPE/ARS/ClipUp against naive NumPy
written from the papers' formulas, on members regenerated with ``ask``.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from trees import assert_trees_close, assert_trees_equal

from es_toolkit import Normal, make_perturbed_fun
from es_toolkit import sampling as sampling_lib
from es_toolkit.strategies import STRATEGIES, ars, base, clipup, get_strategy, open_es, pgpe, snes

NAMES = sorted(STRATEGIES)
KEY = jax.random.key(7)
PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "layer": {"b": jnp.array([0.3, -0.2])}}


def fitness_fn(params):
    """Higher is better; optimum at 0.5 everywhere."""
    return -sum(jnp.sum((leaf - 0.5) ** 2) for leaf in jax.tree.leaves(params))


def evaluate(es, key, state):
    return jax.vmap(fitness_fn)(es.ask(key, state))


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


# --- registry --------------------------------------------------------------------------


def test_registry_builds_every_strategy_by_name_with_defaults():
    assert NAMES == ["ars", "cma_es", "lm_ma_es", "open_es", "pgpe", "sep_cma_es", "snes"]
    for name in NAMES:
        es = get_strategy(name)(10)
        assert es.population_size == 10
    with pytest.raises(ValueError, match=r"unknown strategy 'cma'.*ars, cma_es, lm_ma_es, open_es"):
        get_strategy("cma")


@pytest.mark.parametrize(
    ("factory", "kwargs", "error", "match"),
    [
        (open_es, {"population_size": 9}, ValueError, "population_size must be even"),
        (pgpe, {"population_size": 10, "sigma": -1.0}, ValueError, "sigma"),
        (pgpe, {"population_size": 10, "max_sigma_change": 1.0}, ValueError, "max_sigma_change"),
        (
            pgpe,
            {"population_size": 10, "learning_rate": 0.1, "optimizer": optax.sgd(0.1)},
            ValueError,
            "either learning_rate",
        ),
        (pgpe, {"population_size": 10, "chunk_size": 3}, ValueError, "chunk_size must be even"),
        (snes, {"population_size": 1}, ValueError, "population_size must be an int >= 2"),
        (snes, {"population_size": 10, "sigma_learning_rate": 0.0}, ValueError, "sigma_learning_r"),
        (snes, {"population_size": 10, "fitness_shaping": "best"}, ValueError, "fitness_shaping"),
        (ars, {"population_size": 11}, ValueError, "population_size must be even"),
        (ars, {"population_size": 10, "top_directions": 6}, ValueError, "at most .* = 5"),
        (ars, {"population_size": 10, "top_directions": 0}, ValueError, "top_directions"),
        (ars, {"population_size": 10, "sigma": 0.0}, ValueError, "sigma"),
        (clipup, {"learning_rate": 0.1, "momentum": 1.0}, ValueError, "momentum"),
        (clipup, {"learning_rate": 0.1, "max_speed": -1.0}, ValueError, "max_speed"),
    ],
)
def test_bad_arguments_are_named(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(**kwargs)


# --- the shared contract ---------------------------------------------------------------

# Every default shaping maps constant fitness to all-zero weights (tied ranks share their
# average); z-score is checked too. ARS has no shaping: its step (r+ - r-) / sigma_R is 0.
ZERO_FOR_CONSTANT = {
    "open_es": "z_score",
    "pgpe": "z_score",
    "snes": "z_score",
    "ars": None,
    "cma_es": None,
    "sep_cma_es": None,
    "lm_ma_es": None,
}
# The CMA-ES family ranks with pycma's stable sort: tied members keep their order, so
# constant fitness still moves them (their tolflatfitness criterion stops such a run).
RANKED_IN_MEMBER_ORDER = {"cma_es", "sep_cma_es", "lm_ma_es"}
# Eigenvectors of nearly equal eigenvalues turn float32 rounding (jit or not, chunks)
# into differences of order rounding / eigenvalue gap.
TOLERANCE = {"cma_es": {"rtol": 1e-3, "atol": 1e-3}}
# Non-finite fitness: rank shapings put it below every finite value (tied among
# themselves); ARS, which uses raw returns, replaces it by the worst finite return.
NON_FINITE_AS = {
    "open_es": -1.0,
    "pgpe": -1.0,
    "snes": -1.0,
    "ars": 0.0,
    "cma_es": -1.0,
    "sep_cma_es": -1.0,
    "lm_ma_es": -1.0,
}


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    """Every strategy, with its defaults, on a nested pytree of matrices and vectors:

    * ``ask``/``tell`` run under ``jit`` inside ``lax.scan`` and agree with eager calls;
    * chunked (10 members, chunks of 4: a remainder chunk) equals unchunked, and an ``ask``
      slice equals the same rows of the whole population;
    * constant fitness, under the default shaping and z-score, leaves mean and sigma
      bitwise unchanged for 3 generations (zero gradient: Adam and ClipUp from rest give
      zero updates; the sigma rules give sigma + 0 and sigma * exp(0));
    * NaN/+-inf act exactly like the worst values (see NON_FINITE_AS), are counted, and
      leave the state finite, even when no member is finite;
    * a fitness of the wrong shape is a ValueError naming ``fitness``.
    """
    n = 10
    es = get_strategy(name)(n)
    chunked = get_strategy(name)(n, chunk_size=4)
    shaping = ZERO_FOR_CONSTANT[name]
    flat = get_strategy(name)(n, **({"fitness_shaping": shaping} if shaping else {}))
    state = es.init(PARAMS)
    keys = jax.random.split(KEY, 3)

    members = jax.eval_shape(es.ask, KEY, state)
    assert jax.tree.structure(members) == jax.tree.structure(PARAMS)
    for member, param in zip(jax.tree.leaves(members), jax.tree.leaves(PARAMS), strict=True):
        assert member.shape == (n, *param.shape)
        assert member.dtype == param.dtype
    for shape in [(n - 1,), (n, 1), ()]:
        with pytest.raises(ValueError, match=rf"fitness must have shape \({n},\)"):
            es.tell(KEY, state, jnp.zeros(shape))

    def generation(state, key):
        new, metrics = es.tell(key, state, evaluate(es, key, state))
        return new, (new, metrics)

    # ask/tell under jit, inside lax.scan, on the pytree; metrics a flat dict of scalars.
    final, (states, metrics) = jax.jit(lambda s: jax.lax.scan(generation, s, keys))(state)
    assert int(final.generation) == 3
    assert jax.tree.structure(final) == jax.tree.structure(state)
    assert all_finite(final)
    expected = {"fitness_mean", "fitness_max", "fitness_min", "fitness_std"}
    assert expected | {"num_non_finite", "grad_norm", "sigma"} <= set(metrics)
    assert all(value.shape == (3,) for value in metrics.values())

    # Same numbers without jit. The remaining checks run eagerly too: they reuse the
    # primitives compiled here instead of compiling new programs (compiling dominates).
    members = es.ask(keys[0], state)
    fitness = jax.vmap(fitness_fn)(members)
    first = es.tell(keys[0], state, fitness)
    tolerance = TOLERANCE.get(name, {})
    assert_trees_close(first, jax.tree.map(lambda leaf: leaf[0], (states, metrics)), **tolerance)

    # Chunked equals unchunked.
    assert_trees_equal(chunked.ask(keys[0], state), members)
    assert_trees_equal(chunked.ask(keys[0], state, 4, 4), jax.tree.map(lambda m: m[4:8], members))
    assert_trees_close(chunked.tell(keys[0], state, fitness), first, **tolerance)

    # Constant fitness, under the default shaping and under z-score.
    for strategy in () if name in RANKED_IN_MEMBER_ORDER else (es, flat):
        start = constant = strategy.init(PARAMS)
        for key in keys:
            constant, constant_metrics = strategy.tell(key, constant, jnp.full(n, 3.0))
            assert float(constant_metrics["grad_norm"]) == 0.0
        assert_trees_equal(constant.mean, start.mean)
        if hasattr(start, "sigma"):
            assert_trees_equal(constant.sigma, start.sigma)

    # Non-finite fitness.
    fitness = fitness.at[n - 1].set(jnp.min(fitness) - 1.0)  # the strict worst finite, last
    bad = fitness.at[jnp.array([0, 3, 4])].set(jnp.array([jnp.nan, jnp.inf, -jnp.inf]))
    worst = fitness.at[jnp.array([0, 3, 4])].set(fitness[n - 1] + NON_FINITE_AS[name])
    got, got_metrics = es.tell(keys[0], state, bad)
    assert int(got_metrics["num_non_finite"]) == 3
    assert all_finite(got)
    assert all_finite(got_metrics["grad_norm"])

    def updated(s):  # a termination history, where kept, records that some were not finite
        return s._replace(history=None) if hasattr(s, "history") else s

    assert_trees_close(updated(got), updated(es.tell(keys[0], state, worst)[0]))
    nothing, nothing_metrics = es.tell(keys[0], state, jnp.full(n, jnp.nan))
    assert int(nothing_metrics["num_non_finite"]) == n
    assert all_finite(nothing)


# How the strategies without the option always draw.
NO_ANTITHETIC_OPTION = {
    "ars": (True,),
    "cma_es": (False,),
    "sep_cma_es": (False,),
    "lm_ma_es": (False,),
}
DRAW_ONCE_CASES = [
    (name, antithetic)
    for name in NAMES
    for antithetic in NO_ANTITHETIC_OPTION.get(name, (False, True))
]


@pytest.mark.parametrize(("name", "antithetic"), DRAW_ONCE_CASES)
def test_evaluate_and_tell_draws_once_with_the_same_result(name, antithetic):
    """``evaluate_and_tell`` draws the noise once and gives it to ``tell(directions=)``;
    the public path (``ask``, then ``tell`` regenerating from the key) gives the same
    state, metrics and fitness to float rounding, under jit, over 3 generations of a
    ``lax.scan``. ``tell`` really uses the given directions (any key then gives the same
    step), and chunked evaluation falls back to regenerating, with the same numbers."""
    options = {} if name in NO_ANTITHETIC_OPTION else {"antithetic": antithetic}
    es = get_strategy(name)(10, **options)
    keys = jax.random.split(KEY, 3)

    def public(state, key):
        fitness = evaluate(es, key, state)
        new, metrics = es.tell(key, state, fitness)
        return new, (metrics, fitness)

    def once(state, key, chunk_size=None):
        new, metrics, fitness = base.evaluate_and_tell(es, key, state, fitness_fn, chunk_size)
        return new, (metrics, fitness)

    def run(generation):
        return jax.jit(lambda s: jax.lax.scan(generation, s, keys))(es.init(PARAMS))

    want = run(public)
    assert base.draws_once(es, PARAMS)
    assert_trees_close(run(once), want, rtol=1e-6, atol=1e-7)
    assert not base.draws_once(es, PARAMS, chunk_size=4)
    assert_trees_close(run(lambda s, k: once(s, k, 4)), want, rtol=1e-6, atol=1e-7)

    state = es.init(PARAMS)
    n_dirs = sampling_lib.num_directions(es.sampling)
    z = sampling_lib.sample_directions(es.sampling, KEY, 0, n_dirs, PARAMS)
    members = base.members_from_directions(es.sampling, state.mean, partial(es.transform, state), z)
    assert_trees_equal(members, es.ask(KEY, state))
    fitness = jax.vmap(fitness_fn)(members)
    given = es.tell(jax.random.key(99), state, fitness, directions=z)
    assert_trees_close(given, es.tell(KEY, state, fitness), rtol=1e-6, atol=1e-7)


def test_evaluate_and_tell_works_for_a_strategy_without_sampling():
    """A strategy given only as ``EvolutionStrategy(init, ask, tell, n)`` (``tell`` with
    no ``directions``) still runs: ``evaluate`` then ``tell``."""
    inner = open_es(8)
    es = base.EvolutionStrategy(
        inner.init, inner.ask, lambda k, s, f: inner.tell(k, s, f), inner.population_size
    )
    state = es.init(PARAMS)
    assert not base.draws_once(es, PARAMS)
    new, metrics, fitness = base.evaluate_and_tell(es, KEY, state, fitness_fn)
    assert_trees_close(fitness, evaluate(inner, KEY, state))
    assert_trees_close((new, metrics), inner.tell(KEY, state, fitness))


SPHERE = {
    "open_es": {"sigma": 0.1, "optimizer": optax.adam(0.05)},
    # ClipUp's steps have a fixed length, so a decaying step size lets it settle.
    "pgpe": {"sigma": 0.3, "learning_rate": optax.linear_schedule(0.1, 0.005, 200)},
    "snes": {},
    "ars": {"sigma": 0.1, "learning_rate": 0.1},
    "cma_es": {},
    "sep_cma_es": {},
    "lm_ma_es": {},
}


@pytest.mark.parametrize("name", NAMES)
def test_reduces_the_sphere(name):
    """A learning smoke test: d = 10, 20 members, 200 generations from ones; every strategy
    divides ||x||^2 = 10 by more than 100 (each reaches below 0.002 with 5 keys tried)."""
    es = get_strategy(name)(20, **SPHERE[name])

    def generation(state, key):
        pop = es.ask(key, state)
        return es.tell(key, state, -jax.vmap(lambda x: jnp.sum(x**2))(pop))[0], None

    keys = jax.random.split(KEY, 200)
    final, _ = jax.jit(lambda s: jax.lax.scan(generation, s, keys))(es.init(jnp.ones(10)))
    assert float(jnp.sum(final.mean**2)) < 10.0 / 100


# --- oracles ---------------------------------------------------------------------------


def one_generation(es, state, fun=fitness_fn):
    """Ask, evaluate and tell in one compiled call: members (n, d) flattened and their
    fitness as float64 NumPy, then the new state and metrics."""

    @jax.jit
    def step(state):
        members = es.ask(KEY, state)
        fitness = jax.vmap(fun)(members)
        new, metrics = es.tell(KEY, state, fitness)
        return jax.vmap(lambda m: ravel_pytree(m)[0])(members), fitness, new, metrics

    members, fitness, new, metrics = step(state)
    return np.asarray(members, np.float64), np.asarray(fitness, np.float64), new, metrics


def flat64(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


def centered_ranks_np(f):
    return np.argsort(np.argsort(f)) / (len(f) - 1) - 0.5


@pytest.mark.parametrize("antithetic", [False, True])
def test_open_es_with_raw_fitness_is_grad_of_perturbed_fun(antithetic):
    """With raw fitness minus f(mean) and sgd(1.0), the OpenES step equals jax.grad of
    make_perturbed_fun(f, n, sigma, Normal()) for the same key: the same estimator."""

    def f(p):
        return -jnp.sum(jnp.abs(p["w"])) - jnp.sum(p["layer"]["b"] ** 2)

    es = open_es(
        40,
        0.1,
        optimizer=optax.sgd(1.0),
        fitness_shaping="raw",
        antithetic=antithetic,
        chunk_size=8,
    )
    perturbed = make_perturbed_fun(f, 40, 0.1, Normal(), antithetic=antithetic)

    @jax.jit
    def both(params):
        state = es.init(params)
        fitness = jax.vmap(f)(es.ask(KEY, state)) - f(params)
        new, _ = es.tell(KEY, state, fitness)
        step = jax.tree.map(jnp.subtract, new.mean, state.mean)
        return step, jax.grad(perturbed, argnums=1)(KEY, params)

    step, grad = both(PARAMS)
    assert_trees_close(step, grad, rtol=1e-4, atol=1e-6)


def nes_utilities_np(f):
    n = len(f)
    rank_best_first = np.empty(n)
    rank_best_first[np.argsort(-f)] = np.arange(1, n + 1)
    raw = np.maximum(0.0, math.log(n / 2 + 1) - np.log(rank_best_first))
    return raw / raw.sum() - 1.0 / n


@pytest.mark.parametrize("antithetic", [False, True])
def test_snes_matches_numpy_reference(antithetic):
    es = get_strategy("snes")(12, 0.7, antithetic=antithetic)
    state = es.init(PARAMS)
    state = state._replace(
        sigma=jax.tree.map(
            lambda s: s * jnp.arange(1, s.size + 1).reshape(s.shape) / 4, state.sigma
        )
    )
    members, f, new, _ = one_generation(es, state)
    mean, sigma = flat64(state.mean), flat64(state.sigma)
    z = (members - mean) / sigma
    u = nes_utilities_np(f)
    d = mean.size
    eta_sigma = (3 + math.log(d)) / (5 * math.sqrt(d))
    want_mean = mean + 1.0 * sigma * (u @ z)
    want_sigma = sigma * np.exp(0.5 * eta_sigma * (u @ (z**2 - 1)))
    np.testing.assert_allclose(flat64(new.mean), want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat64(new.sigma), want_sigma, rtol=1e-5)


@pytest.mark.parametrize(
    ("antithetic", "shaping", "sigma_lr"), [(True, "centered_ranks", 2.0), (False, "raw", 0.5)]
)
def test_pgpe_matches_numpy_reference(antithetic, shaping, sigma_lr):
    """Sehnke et al.'s gradients with the mean-fitness baseline, a first ClipUp step from
    rest (v = lr g / |g|) and sigma clipped to +-20%; sigma_learning_rate is large enough
    that some sigmas hit the bound and others do not."""
    lr = 0.15
    es = get_strategy("pgpe")(12, 0.2, lr, sigma_lr, fitness_shaping=shaping, antithetic=antithetic)
    state = es.init(PARAMS)
    members, f, new, metrics = one_generation(es, state)
    mean, sigma = flat64(state.mean), flat64(state.sigma)
    w = centered_ranks_np(f) if shaping == "centered_ranks" else f
    b = w.mean()
    if antithetic:
        eps = members[0::2] - mean
        np.testing.assert_allclose(members[1::2] - mean, -eps, atol=1e-6)
        plus, minus = w[0::2], w[1::2]
        grad_mu = ((plus - minus) / 2) @ eps / len(eps)
        grad_sigma = ((plus + minus) / 2 - b) @ ((eps**2 - sigma**2) / sigma) / len(eps)
    else:
        eps = members - mean
        grad_mu = (w - b) @ eps / len(eps)
        grad_sigma = (w - b) @ ((eps**2 - sigma**2) / sigma) / len(eps)
    want_mean = mean + lr * grad_mu / np.linalg.norm(grad_mu)
    proposed = sigma + sigma_lr * grad_sigma
    want_sigma = np.clip(proposed, 0.8 * sigma, 1.2 * sigma)
    assert 0 < np.sum(want_sigma != proposed) < sigma.size  # the bound is exercised
    np.testing.assert_allclose(flat64(new.mean), want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat64(new.sigma), want_sigma, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["grad_norm"]), np.linalg.norm(grad_mu), rtol=1e-5)


@pytest.mark.parametrize("top", [None, 3])
def test_ars_matches_numpy_reference(top):
    """Mania et al.'s V1(-t) step: top-b directions by max(r+, r-), divided by b sigma_R."""
    sigma, lr = 0.05, 0.3
    es = get_strategy("ars")(14, sigma, lr, top_directions=top)
    state = es.init(PARAMS)
    members, f, new, metrics = one_generation(es, state)
    mean = flat64(state.mean)
    delta = (members[0::2] - mean) / sigma
    np.testing.assert_allclose((members[1::2] - mean) / sigma, -delta, atol=1e-5)
    plus, minus = f[0::2], f[1::2]
    b = len(plus) if top is None else top
    best = np.argsort(-np.maximum(plus, minus))[:b]
    sigma_r = np.concatenate([plus[best], minus[best]]).std()
    want = mean + lr / (b * sigma_r) * ((plus[best] - minus[best]) @ delta[best])
    np.testing.assert_allclose(flat64(new.mean), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["reward_std"]), sigma_r, rtol=1e-5)


@pytest.mark.parametrize("max_speed", [None, 0.15])
def test_clipup_matches_numpy_reference(max_speed):
    """Toklu et al.: v = clip(m v + lr g/|g|, max_speed), x -= v, global norms over the tree;
    default max_speed = 2 lr. The gradients make the clip bite on some steps, not others.
    A zero gradient adds nothing, but with a velocity the parameters still coast: a zero
    gradient leaves them unchanged only from rest (and likewise for Adam)."""
    lr, momentum = 0.1, 0.9
    limit = 2 * lr if max_speed is None else max_speed
    grads = [np.array([3.0, 4.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 0.0])]
    grads += [np.array([0.0, -2.0, 1.0]), np.array([5.0, 5.0, 5.0])] * 3
    opt = clipup(lr, momentum, max_speed)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    state = opt.init(params)
    update = jax.jit(opt.update)
    x, v, clipped = np.zeros(3), np.zeros(3), []
    for g in grads:
        step = lr * g / np.linalg.norm(g) if np.any(g) else 0.0 * g
        v = momentum * v + step
        speed = np.linalg.norm(v)
        clipped.append(speed > limit)
        v = v * min(1.0, limit / speed) if speed > 0 else v
        x = x - v
        tree_g = {"a": jnp.asarray(g[:2], jnp.float32), "b": jnp.asarray(g[2:], jnp.float32)}
        updates, state = update(tree_g, state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(flat64(params), x, rtol=1e-5, atol=1e-6)
    assert any(clipped)
    assert not all(clipped)
    assert int(state.count) == len(grads)


def test_clipup_zero_gradient_from_rest_does_not_move():
    opt = clipup(0.1)
    params = {"a": jnp.ones(3)}
    state = opt.init(params)
    updates, state = opt.update({"a": jnp.zeros(3)}, state, params)
    assert_trees_equal(updates, {"a": jnp.zeros(3)})
    assert all_finite(state)


# --- memory defaults and chunk checks -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_default_strategies_chunk_only_large_problems(name):
    """With no chunk_size, a strategy's update holds the whole population for small
    problems and at most DEFAULT_MEMORY_BUDGET bytes of noise for large ones (10,000
    members of d = 100,000: 4 GB whole); minimize's evaluation picks the same chunk."""
    small = get_strategy(name)(10)
    assert sampling_lib.chunk_directions(small.sampling, PARAMS) == sampling_lib.num_directions(
        small.sampling
    )
    assert base.evaluation_chunk_size(small, PARAMS, None) is None
    large = get_strategy(name)(10_000)
    like = jax.ShapeDtypeStruct((100_000,), jnp.float32)
    per = sampling_lib.members_per_direction(large.sampling)
    members = per * sampling_lib.chunk_directions(large.sampling, like)
    assert members * 100_000 * 4 <= sampling_lib.DEFAULT_MEMORY_BUDGET
    assert members == base.evaluation_chunk_size(large, like, None)
    assert base.evaluation_chunk_size(large, like, None, memory_budget=None) is None


def test_odd_chunks_of_antithetic_pairs_name_the_value_not_a_tracer():
    es = open_es(8)
    state = es.init(PARAMS)
    with pytest.raises(ValueError, match=r"chunk_size must be even.*got 3\.$"):
        base.evaluate(es, KEY, state, fitness_fn, chunk_size=3)
    with pytest.raises(ValueError, match=r"count must be even \(whole pairs\), got 3\."):
        jax.jit(lambda start: es.ask(KEY, state, start, 3))(2)
    with pytest.raises(ValueError, match=r"start must be even \(whole pairs\), got 1\.$"):
        es.ask(KEY, state, 1, 2)
