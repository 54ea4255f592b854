"""LM-MA-ES against a NumPy generation written from Algorithm 1 of Loshchilov, Glasmachers
and Beyer (2019), and on rotated and large ellipsoids."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from trees import assert_trees_close

from es_toolkit import minimize
from es_toolkit import sampling as sampling_lib
from es_toolkit.objectives import get as get_objective
from es_toolkit.strategies import base, termination
from es_toolkit.strategies.lm_ma_es import constants, default_num_vectors, largest_scale, lm_ma_es

KEY = jax.random.key(5)
# d = 30 >= 2 lambda: the paper's rates are all below 1. d = 8 < lambda: capped at 1.
LARGE = {"w": np.linspace(-1.0, 1.0, 20).reshape(5, 4), "layer": {"b": np.linspace(0, 1, 10)}}
SMALL = {"w": np.linspace(-1.0, 1.0, 6).reshape(3, 2), "layer": {"b": np.array([0.3, -0.2])}}


def flat64(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


def rows64(tree):
    return np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(tree), np.float64)


def lm_ma_es_np(y, sigma, p_sigma, M, t, z, f):
    """Algorithm 1, lines 4-15, on the explicit population: z (lambda, n), M (m, n), f
    higher is better. c_sigma and c_c,j are capped at 1 (the paper leaves d < 2 lambda
    undefined). Returns the members and the new state."""
    lam, n = z.shape
    m = M.shape[0]
    mu = lam // 2
    w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    w = w / w.sum()
    mu_w = 1 / np.sum(w**2)
    c_sigma = min(1.0, 2 * lam / n)
    c_d = [1 / (1.5**j * n) for j in range(m)]
    c_c = [min(1.0, lam / (4**j * n)) for j in range(m)]
    d = z.copy()
    for i in range(lam):
        for j in range(min(t, m)):
            d[i] = (1 - c_d[j]) * d[i] + c_d[j] * M[j] * (M[j] @ d[i])
    members = y + sigma * d
    order = np.argsort(-f, kind="stable")
    z_w = sum(w[i] * z[order[i]] for i in range(mu))
    d_w = sum(w[i] * d[order[i]] for i in range(mu))
    p_sigma = (1 - c_sigma) * p_sigma + math.sqrt(mu_w * c_sigma * (2 - c_sigma)) * z_w
    M = np.stack(
        [(1 - c_c[j]) * M[j] + math.sqrt(mu_w * c_c[j] * (2 - c_c[j])) * z_w for j in range(m)]
    )
    log_step = np.clip(c_sigma / 2 * (np.sum(p_sigma**2) / n - 1), -1, 1)
    new = dict(mean=y + sigma * d_w, sigma=sigma * math.exp(log_step), path_sigma=p_sigma)
    return members, {**new, "vectors": M}


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize(
    ("params", "lam", "generation"), [(LARGE, 8, 2), (LARGE, 8, 9), (SMALL, 12, 5)]
)
def test_one_generation_matches_the_numpy_oracle(x64, params, lam, generation):
    """Members (``ask``) and the update equal Algorithm 1 on the same noise, with 4 vectors,
    from a state whose vectors and path are random: at t = 2 only M_1, M_2 shape the
    members, from t = 4 on all four do. ``tell`` unchunked, in chunks of 3 (a remainder
    chunk) and from ``directions`` agree; under x64 everything is float64, to 1e-12."""
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        params = jax.tree.map(lambda p: jnp.asarray(p, dtype), params)
        es = lm_ma_es(lam, 0.6, num_vectors=4)
        state = es.init(params)
        n = sampling_lib.flat_size(params)
        rng = np.random.default_rng(1)
        unravel = ravel_pytree(params)[1]
        vectors = 2 * rng.normal(size=(4, n))
        state = state._replace(
            path_sigma=unravel(jnp.asarray(rng.normal(size=n), dtype)),
            vectors=jax.vmap(unravel)(jnp.asarray(vectors, dtype)),
            generation=jnp.asarray(generation, jnp.int32),
        )
        z = sampling_lib.sample_directions(es.sampling, KEY, 0, lam, params)
        x = rows64(jax.jit(es.ask)(KEY, state))
        fitness = -np.sum(np.arange(1, n + 1) * (x - 0.3) ** 2, axis=1)
        members, want = lm_ma_es_np(
            flat64(params), 0.6, flat64(state.path_sigma), vectors, generation, rows64(z), fitness
        )
        rtol = 1e-12 if x64 else 1e-5
        np.testing.assert_allclose(x, members, rtol=rtol, atol=rtol)
        fitness = jnp.asarray(fitness, dtype)
        chunked = lm_ma_es(lam, 0.6, num_vectors=4, chunk_size=3)
        for new, metrics in [
            jax.jit(es.tell)(KEY, state, fitness),
            jax.jit(chunked.tell)(KEY, state, fitness),
            jax.jit(es.tell)(jax.random.key(99), state, fitness, directions=z),
        ]:
            assert {
                leaf.dtype
                for leaf in jax.tree.leaves(new)
                if jnp.issubdtype(leaf.dtype, jnp.floating)
            } == {jnp.dtype(dtype)}
            np.testing.assert_allclose(flat64(new.mean), want["mean"], rtol=rtol, atol=rtol)
            np.testing.assert_allclose(
                flat64(new.path_sigma), want["path_sigma"], rtol=rtol, atol=rtol
            )
            np.testing.assert_allclose(rows64(new.vectors), want["vectors"], rtol=rtol, atol=rtol)
            np.testing.assert_allclose(float(new.sigma), want["sigma"], rtol=rtol)
            assert int(new.generation) == generation + 1
            step = np.linalg.norm(want["mean"] - flat64(params))
            np.testing.assert_allclose(float(metrics["grad_norm"]), step, rtol=1e-4)


def test_default_population_and_vectors():
    """m = 4 + floor(3 ln d) vectors by default, shaped like params with a leading axis."""
    state = lm_ma_es(10).init(SMALL)
    assert [v.shape for v in jax.tree.leaves(state.vectors)] == [(4 + 6, 2), (4 + 6, 3, 2)]
    assert [v.shape for v in jax.tree.leaves(lm_ma_es(10, num_vectors=3).init(SMALL).vectors)] == [
        (3, 2),
        (3, 3, 2),
    ]


def run_ellipsoid(es, f, x0, generations, key, every):
    """f(mean) every ``every`` generations, and the final state."""

    def generation(state, key):
        fitness = -jax.vmap(f)(es.ask(key, state))
        return es.tell(key, state, fitness)[0], None

    def block(state, keys):
        state, _ = jax.lax.scan(generation, state, keys)
        return state, f(state.mean)

    keys = jax.random.split(key, generations).reshape(generations // every, every)
    return jax.jit(lambda s: jax.lax.scan(block, s, keys))(es.init(x0))


def test_reduces_a_rotated_ellipsoid_steadily():
    """d = 200, condition 1e4, a random rotation, 19 members (the default), float32,
    4,000 generations from ones with sigma = 1: f(mean) falls in every block of 500
    generations, by at least a third, and by more than 1e4 overall. The rotation makes
    the vectors matter: the learned directions are not the axes."""
    d = 200
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))
    rotation = jnp.asarray(rotation, jnp.float32)
    scales = jnp.asarray(10.0 ** (4 * np.arange(d) / (d - 1)), jnp.float32)

    def f(x):
        return jnp.sum(scales * (rotation @ x) ** 2)

    es = lm_ma_es(4 + math.floor(3 * math.log(d)), 1.0)
    final, values = run_ellipsoid(es, f, jnp.ones(d), 4000, KEY, 500)
    values = np.asarray(values)
    start = float(f(jnp.ones(d)))
    trace = np.concatenate([[start], values])
    assert np.all(trace[1:] < trace[:-1] * 2 / 3), trace
    assert trace[-1] < start / 1e4, trace
    assert np.all(np.isfinite(rows64(final.vectors)))


@pytest.mark.slow
def test_float32_stays_finite_at_d_10000_for_10000_generations():
    """The separable ellipsoid (condition 1e6), d = 10,000, float32, the default 31
    members and 31 vectors, 10,000 generations from ones with sigma = 1: the state stays
    finite and f(mean) falls in every block of 2,000 generations and by more than 20x
    overall."""
    d = 10_000
    scales = jnp.asarray(10.0 ** (6 * np.arange(d) / (d - 1)), jnp.float32)

    def f(x):
        return jnp.sum(scales * x**2)

    es = lm_ma_es(4 + math.floor(3 * math.log(d)), 1.0)
    final, values = run_ellipsoid(es, f, jnp.ones(d), 10_000, KEY, 2000)
    trace = np.concatenate([[float(f(jnp.ones(d)))], np.asarray(values)])
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(final))
    assert float(final.sigma) > 0
    assert np.all(trace[1:] < trace[:-1]), trace
    assert trace[-1] < trace[0] / 20, trace


def test_contract_under_jit_in_chunks_and_with_non_finite_fitness():
    """Three generations in a jitted ``lax.scan`` stay finite, and the second (M_1 in use)
    equals a separate ``tell``; chunks of 4 (with a remainder) ask and tell the same; NaN
    and +-inf rank exactly like values below the worst finite one (in member order) and
    leave the state finite, even when all are NaN; ``evaluate_and_tell`` (noise drawn
    once) equals ask-then-tell; ``rebuild`` changes the population."""
    es, chunked = lm_ma_es(10, 0.5), lm_ma_es(10, 0.5, chunk_size=4)
    params = jax.tree.map(jnp.asarray, SMALL)
    state = es.init(params)
    keys = jax.random.split(KEY, 3)
    tell, tell_in_chunks = jax.jit(es.tell), jax.jit(chunked.tell)

    def f(p):
        return -sum(jnp.sum((leaf - 0.5) ** 2) for leaf in jax.tree.leaves(p))

    def generation(state, key):
        new, metrics = es.tell(key, state, jax.vmap(f)(es.ask(key, state)))
        return new, (new, metrics)

    final, (states, metrics) = jax.jit(lambda s: jax.lax.scan(generation, s, keys))(state)
    assert int(final.generation) == 3
    assert all_finite(final)
    assert {"fitness_mean", "num_non_finite", "grad_norm", "sigma"} <= set(metrics)
    state, key = jax.tree.map(lambda leaf: leaf[0], states), keys[1]  # M_1 in use
    members = es.ask(key, state)
    fitness = jax.vmap(f)(members)
    second = tell(key, state, fitness)
    assert_trees_close(second, jax.tree.map(lambda leaf: leaf[1], (states, metrics)))
    assert_trees_close(chunked.ask(key, state), members, rtol=0, atol=0)
    assert_trees_close(chunked.ask(key, state, 4, 4), jax.tree.map(lambda m: m[4:8], members))
    assert_trees_close(tell_in_chunks(key, state, fitness), second)
    assert_trees_close(base.evaluate_and_tell(es, key, state, f), (*second, fitness))

    fitness = fitness.at[9].set(jnp.min(fitness) - 1.0)  # the strict worst finite, last
    bad = fitness.at[jnp.array([0, 3, 4])].set(jnp.array([jnp.nan, jnp.inf, -jnp.inf]))
    worst = fitness.at[jnp.array([0, 3, 4])].set(fitness[9] - 1.0)
    got, got_metrics = tell(key, state, bad)
    assert int(got_metrics["num_non_finite"]) == 3
    # The distribution moves alike; the termination history records the non-finite range.
    assert_trees_close(
        got._replace(history=None), tell(key, state, worst)[0]._replace(history=None)
    )
    assert all_finite(tell(key, state, jnp.full(10, jnp.nan))[0])
    with pytest.raises(ValueError, match=r"fitness must have shape \(10,\)"):
        tell(KEY, state, jnp.zeros(9))
    assert es.rebuild(population_size=20).population_size == 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"population_size": 1}, "population_size must be an int >= 2"),
        ({"population_size": 10, "sigma": -1.0}, "sigma must be positive"),
        ({"population_size": 10, "num_vectors": 0}, "num_vectors must be an int >= 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lm_ma_es(**kwargs)


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def run_until_stop(es, f, x0, key, limit):
    """(generations, stop reason, best f of the last generation, final state) of a run
    of ``es`` on f (minimized) until ``stop`` says so or ``limit`` generations."""

    @jax.jit
    def step(state, key):
        values = jax.vmap(f)(es.ask(key, state))
        state = es.tell(key, state, -values)[0]
        return state, es.stop(state), jnp.min(values)

    state = es.init(x0)
    for generation in range(1, limit + 1):
        state, code, best = step(state, jax.random.fold_in(key, generation))
        if int(code):
            break
    return generation, termination.STOP_REASONS[int(code)], float(best), state


@pytest.mark.parametrize("x64", [False, True])
def test_stops_on_tolfun_then_tolx_on_the_sphere(x64):
    """The sphere, d = 40, 15 members: pycma's defaults stop on tolfun once the best f is
    below 1e-12 (about 500 generations); without tolfun and tolfunhist, tolx stops it
    later, once sigma times the bound on the standard deviations is below 1e-11."""

    def sphere(x):
        return jnp.sum(x**2)

    with jax.enable_x64(x64):
        x0 = jnp.ones(40)
        generations, reason, best, _ = run_until_stop(lm_ma_es(15), sphere, x0, KEY, 3000)
        assert reason == "tolfun"
        assert best < 1e-12
        es = lm_ma_es(15, tolfun=None, tolfunhist=None)
        later, reason, best, state = run_until_stop(es, sphere, x0, KEY, 3000)
        assert reason == "tolx"
        assert later > generations
        bound = largest_scale(state, constants(15, 40, default_num_vectors(40)).c_d)
        assert float(state.sigma * bound) < 1e-11


def test_largest_scale_bounds_the_standard_deviations():
    """Against the explicit product T of the transformations (NumPy, d = 8, m = 4, long
    random vectors, t = 3 and t = 9): sqrt(diag(T T^T)) and the spectral norm of T are at
    most ``largest_scale``, which is the exact norm when a single vector is in use."""
    es = lm_ma_es(6, num_vectors=4)
    state = es.init(jnp.zeros(8))
    vectors = 3 * np.random.default_rng(2).normal(size=(4, 8))
    c_d = constants(6, 8, 4).c_d
    for t in (1, 3, 9):
        state = state._replace(
            vectors=jnp.asarray(vectors, jnp.float32), generation=jnp.asarray(t, jnp.int32)
        )
        product = np.eye(8)
        for j in range(min(t, 4)):
            step = (1 - c_d[j]) * np.eye(8) + c_d[j] * np.outer(vectors[j], vectors[j])
            product = step @ product  # d <- step d, in order j = 1..m
        bound = float(largest_scale(state, c_d))
        stds = np.sqrt(np.diag(product @ product.T))
        norm = np.linalg.norm(product, 2)
        assert stds.max() <= norm * (1 + 1e-6) <= bound * (1 + 1e-5)
        if t == 1:
            assert norm == pytest.approx(bound, rel=1e-5)


def test_flat_fitness_stops():
    """Constant fitness: a zero range stops on tolfun after the first generation; with
    tolfun and tolfunhist off, on tolflatfitness after two (more than one flat one)."""
    for options, reason, generations in [
        ({}, "tolfun", 1),
        ({"tolfun": None, "tolfunhist": None}, "tolflatfitness", 2),
    ]:
        got = run_until_stop(lm_ma_es(8, **options), lambda x: 0 * x[0], jnp.ones(5), KEY, 10)
        assert got[:2] == (generations, reason)


@pytest.mark.parametrize("chunk_size", [None, 8])
def test_minimize_does_not_depend_on_devices(chunk_size):
    """32 members sharded over 2 and 8 devices give the unsharded run's mean and best
    value, to float32 rounding of the psum (the order of the partial sums)."""
    f = get_objective("rastrigin").fn
    x0 = jnp.linspace(-2.0, 2.0, 12)
    options = {"strategy": lm_ma_es(32, 0.3), "num_generations": 12, "progress": False}
    expected = minimize(f, x0, chunk_size=chunk_size, **options)
    for devices in (2, 8):
        got = minimize(f, x0, chunk_size=chunk_size, mesh=devices, **options)
        assert_trees_close(got.state.mean, expected.state.mean, 1e-5, scaled=True)
        assert got.best_value == pytest.approx(expected.best_value, rel=1e-5)
