"""CMA-ES: one update against a NumPy oracle written from Hansen's tutorial, the constants
against pycma, and the numerical guards.

The oracle works on the explicit population (full matrices, a sort of the members, no
chunking, no z-space algebra), on the noise regenerated with ``sampling.sample_directions``
for the same key, and runs in float64 (``jax.enable_x64`` inside the test only), so the
two agree to float64 rounding.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from es_toolkit import minimize, parallel
from es_toolkit import sampling as sampling_lib
from es_toolkit.strategies import base, termination
from es_toolkit.strategies.cma_es import (
    cma_es,
    cma_es_default_population_size,
    default_parameters,
)

KEY = jax.random.key(3)
PARAMS = {"w": np.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": np.array([0.3, -0.2])}


# --- the oracle, written from the tutorial (Table 1 and the algorithm summary) ----------


def tutorial_constants(n, lam):
    """Table 1 of Hansen's tutorial (arXiv:1604.00772), written out independently."""
    w_raw = np.array([math.log((lam + 1) / 2) - math.log(i) for i in range(1, lam + 1)])
    mu = lam // 2
    mueff = sum(w_raw[:mu]) ** 2 / sum(w_raw[:mu] ** 2)
    mueff_minus = sum(w_raw[mu:]) ** 2 / sum(w_raw[mu:] ** 2)
    alpha_cov = 2
    c1 = alpha_cov / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, alpha_cov * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + alpha_cov * mueff / 2))
    alpha_minus = min(1 + c1 / cmu, 1 + 2 * mueff_minus / (mueff + 2), (1 - c1 - cmu) / (n * cmu))
    pos_sum = sum(w for w in w_raw if w > 0)
    neg_sum = sum(-w for w in w_raw if w < 0)
    w = np.array([wi / pos_sum if wi >= 0 else alpha_minus * wi / neg_sum for wi in w_raw])
    cs = (mueff + 2) / (n + mueff + 5)
    ds = 1 + 2 * max(0, math.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    chi = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
    return dict(w=w, mu=mu, mueff=mueff, c1=c1, cmu=cmu, cs=cs, ds=ds, cc=cc, cm=1.0, chi=chi)


def oracle_tell(state, x, fitness):
    """One CMA-ES generation on the explicit population ``x`` (lambda, n), in float64."""
    mean, _ = ravel_pytree(state.mean)
    mean, sigma = np.asarray(mean, np.float64), float(state.sigma)
    cov, b, d = (np.asarray(a, np.float64) for a in (state.C, state.B, state.D))
    p_sigma, p_c = np.asarray(state.p_sigma), np.asarray(state.p_c)
    g = int(state.generation)
    lam, n = x.shape
    k = tutorial_constants(n, lam)
    w, mu, mueff = k["w"], k["mu"], k["mueff"]
    f = np.where(np.isfinite(fitness), fitness, -np.inf)
    order = np.argsort(-f, kind="stable")  # best (highest) first, ties in member order
    y = (x[order] - mean) / sigma
    y_w = w[:mu] @ y[:mu]
    new_mean = mean + k["cm"] * sigma * y_w
    c_inv_sqrt = b @ np.diag(1 / d) @ b.T  # C^{-1/2} of the decomposition sampled with
    cs, cc, c1, cmu = k["cs"], k["cc"], k["c1"], k["cmu"]
    p_sigma = (1 - cs) * p_sigma + math.sqrt(cs * (2 - cs) * mueff) * c_inv_sqrt @ y_w
    # the tutorial's step-size update, with pycma's bound of 1 on the change of log sigma
    log_change = cs / k["ds"] * (np.linalg.norm(p_sigma) / k["chi"] - 1)
    new_sigma = sigma * math.exp(min(1.0, log_change))
    h = (
        np.linalg.norm(p_sigma) / math.sqrt(1 - (1 - cs) ** (2 * (g + 1)))
        < (1.4 + 2 / (n + 1)) * k["chi"]
    )
    p_c = (1 - cc) * p_c + h * math.sqrt(cc * (2 - cc) * mueff) * y_w
    w_circ = np.array(
        [
            wi if wi >= 0 else wi * n / np.linalg.norm(c_inv_sqrt @ yi) ** 2
            for wi, yi in zip(w, y, strict=True)
        ]
    )
    delta_h = (1 - h) * cc * (2 - cc)
    rank_mu = sum(wi * np.outer(yi, yi) for wi, yi in zip(w_circ, y, strict=True))
    new_cov = (
        (1 + c1 * delta_h - c1 - cmu * w.sum()) * cov + c1 * np.outer(p_c, p_c) + cmu * rank_mu
    )
    return {
        "mean": new_mean,
        "sigma": new_sigma,
        "C": new_cov,
        "p_sigma": p_sigma,
        "p_c": p_c,
        "h_sigma": h,
        "sigma_bounded": log_change > 1,
    }


def population(es, key, state):
    """The explicit population ``m + sigma B D z_i`` built in NumPy from the noise that
    ``sample_directions`` regenerates for ``key``."""
    z = sampling_lib.sample_directions(es.sampling, key, 0, es.population_size, state.mean)
    z = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(z), np.float64)
    mean = np.asarray(ravel_pytree(state.mean)[0], np.float64)
    bd = np.asarray(state.B) * np.asarray(state.D)
    return mean + float(state.sigma) * z @ bd.T


def messy_state(es, params, seed, path_scale):
    """A state with a non-trivial covariance (and its decomposition), paths and sigma."""
    rng = np.random.default_rng(seed)
    state = es.init(params)
    n = state.C.shape[0]
    a = rng.normal(size=(n, n))
    cov = a @ a.T / n + 0.3 * np.eye(n)
    eigenvalues, b = np.linalg.eigh(cov)
    return state._replace(
        sigma=jnp.asarray(0.7),
        C=jnp.asarray(cov),
        B=jnp.asarray(b),
        D=jnp.asarray(np.sqrt(eigenvalues)),
        p_sigma=jnp.asarray(path_scale * rng.normal(size=n)),
        p_c=jnp.asarray(0.5 * rng.normal(size=n)),
        generation=jnp.asarray(4, jnp.int32),
    )


def assert_matches_oracle(new, want):
    np.testing.assert_allclose(ravel_pytree(new.mean)[0], want["mean"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(new.sigma), want["sigma"], rtol=1e-10)
    np.testing.assert_allclose(new.p_sigma, want["p_sigma"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.p_c, want["p_c"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.C, want["C"], rtol=1e-10, atol=1e-12)


def assert_decomposes(state):
    """``B diag(D^2) B^T`` is ``C`` and ``D^2`` its ascending eigenvalues."""
    cov = np.asarray(state.C)
    b, d = np.asarray(state.B), np.asarray(state.D)
    np.testing.assert_allclose(d**2, np.linalg.eigvalsh(cov), rtol=1e-10)
    np.testing.assert_allclose(b @ np.diag(d**2) @ b.T, cov, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("chunk_size", "path_scale"), [(None, 0.3), (3, 0.3), (4, 10.0)])
def test_one_tell_matches_the_tutorial(chunk_size, path_scale):
    """One update from a state with a full covariance, on a pytree of 8 parameters and 10
    members with a NaN, a tie and an infinite fitness; unchunked and in chunks of 3 (a
    remainder chunk) or 4. ``path_scale`` 10 makes ||p_sigma|| long enough to stall the
    rank-one update (h_sigma = 0) and to bound sigma's change, 0.3 leaves both off.
    d = 8 refreshes B, D every generation, so the new decomposition is checked too."""
    with jax.enable_x64(True):
        es = cma_es(10, 0.7, chunk_size=chunk_size)
        state = messy_state(es, PARAMS, seed=1, path_scale=path_scale)
        x = population(es, KEY, state)
        fitness = -np.sum((x - 0.5) ** 2, axis=1)
        fitness[[2, 5]] = fitness[7]  # a three-way tie
        fitness[0], fitness[9] = np.nan, np.inf
        # the members as ask builds them
        members = jax.vmap(lambda t: ravel_pytree(t)[0])(es.ask(KEY, state))
        np.testing.assert_allclose(members, x, rtol=1e-12, atol=1e-12)

        new, metrics = jax.jit(es.tell)(KEY, state, jnp.asarray(fitness))
        want = oracle_tell(state, x, fitness)
        assert bool(want["h_sigma"]) == (path_scale < 1)
        assert bool(want["sigma_bounded"]) == (path_scale > 1)
        assert_matches_oracle(new, want)
        assert int(new.generation) == 5
        assert_decomposes(new)
        assert jax.tree.map(lambda leaf: leaf.dtype, new.mean) == {
            "w": jnp.float64,
            "b": jnp.float64,
        }
        assert float(metrics["sigma"]) == float(state.sigma)
        eigenvalues = np.linalg.eigvalsh(state.C)
        assert float(metrics["condition"]) == pytest.approx(
            eigenvalues[-1] / eigenvalues[0], rel=1e-8
        )
        step = want["mean"] - ravel_pytree(state.mean)[0]
        assert float(metrics["grad_norm"]) == pytest.approx(np.linalg.norm(step), rel=1e-10)


def test_lazy_decomposition_samples_with_the_last_one():
    """d = 40, lambda = 6: B and D are refreshed every 2 generations (once more than the
    tutorial's gap 1 / (10 n (c1 + c_mu)) = 1.42 generations have passed, as pycma
    counts); in between, sampling and C^{-1/2} use the last decomposition. Three tells
    against the oracle: stale after the first, refreshed after the second, and the third
    samples with the refreshed one. Chunks of 4."""
    n, lam = 40, 6
    k = tutorial_constants(n, lam)
    interval = math.floor(1 / (10 * n * (k["c1"] + k["cmu"]))) + 1
    assert interval == 2
    with jax.enable_x64(True):
        es = cma_es(lam, 0.4, chunk_size=4)
        state = es.init(jnp.linspace(-1.0, 1.0, n))
        tell = jax.jit(es.tell)

        def fitness_of(x):
            scales = 10.0 ** np.linspace(0, 3, n)
            return -np.sum(scales * (x - 0.2) ** 2, axis=1)

        for generation, key in enumerate(jax.random.split(KEY, 3), start=1):
            x = population(es, key, state)
            fitness = fitness_of(x)
            new, _ = tell(key, state, jnp.asarray(fitness))
            assert_matches_oracle(new, oracle_tell(state, x, fitness))
            if generation % interval:
                np.testing.assert_array_equal(new.B, state.B)
                np.testing.assert_array_equal(new.D, state.D)
                assert not np.allclose(new.C, state.C)
            else:
                assert_decomposes(new)
            state = new


def test_directions_give_the_regenerated_result():
    """``tell(directions=z)`` uses the given noise: any key then gives the same update."""
    es = cma_es(9, 0.5)
    state = es.init(PARAMS)
    z = sampling_lib.sample_directions(es.sampling, KEY, 0, 9, state.mean)
    fitness = jnp.arange(9.0) ** 2 % 7
    tell = jax.jit(es.tell)
    given = tell(jax.random.key(99), state, fitness, directions=z)
    regenerated = tell(KEY, state, fitness)
    for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(regenerated), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- constants against pycma ---------------------------------------------------------------


@pytest.mark.parametrize(("n", "lam"), [(1, 4), (2, 6), (5, 8), (10, 10), (10, 11), (40, 15)])
def test_constants_match_pycma_where_the_tutorial_agrees(n, lam):
    """pycma 4.5 is the oracle for the recombination weights and the learning rates it
    shares with the tutorial: the positive weights, mu_eff, c_c, and c_1 for
    lambda >= 6. Its documented differences are checked as such: c_1 scaled by
    min(1, lambda / 6), 1/4 added to c_mu's numerator, and through it the negative
    weights, whose shape is the same and whose sum follows the same three limits."""
    cma = pytest.importorskip("cma")
    es = cma.CMAEvolutionStrategy(n * [1.0], 1.0, {"popsize": lam, "verbose": -9, "seed": 1})
    theirs = np.asarray(es.sp.weights)
    rates = es.sm.parameters(mueff=es.sp.weights.mueff, lam=lam)
    p = default_parameters(n, lam)
    assert p.mu == es.sp.weights.mu
    np.testing.assert_allclose(p.weights[: p.mu], theirs[: p.mu], rtol=1e-12)
    assert p.mueff == pytest.approx(es.sp.weights.mueff, rel=1e-12)
    assert p.c_c == pytest.approx(es.sp.cc, rel=1e-12)
    assert p.c_1 == pytest.approx(rates["c1"] / min(1, lam / 6), rel=1e-12)
    c1, mueff = rates["c1"], p.mueff
    their_cmu = min(1 - c1, 2 * (0.25 + mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    assert rates["cmu"] == pytest.approx(their_cmu, rel=1e-12)
    ours = p.weights[p.mu :]
    np.testing.assert_allclose(ours / ours.sum(), theirs[p.mu :] / theirs[p.mu :].sum())
    negative = np.log((lam + 1) / 2) - np.log(np.arange(p.mu + 1, lam + 1))
    mueff_minus = negative.sum() ** 2 / np.sum(negative**2)
    cmu = rates["cmu"]
    limit = min(1 + c1 / cmu, 1 + 2 * mueff_minus / (mueff + 2), (1 - c1 - cmu) / (n * cmu))
    assert -theirs[p.mu :].sum() == pytest.approx(limit, rel=1e-9)
    assert p.c_mu == pytest.approx(tutorial_constants(n, lam)["cmu"], rel=1e-12)
    np.testing.assert_allclose(p.weights, tutorial_constants(n, lam)["w"], rtol=1e-12)


def test_default_population_size():
    """4 + floor(3 ln d), pycma's default popsize."""
    cma = pytest.importorskip("cma")
    for d in (1, 2, 3, 10, 100, 400):
        es = cma.CMAEvolutionStrategy(d * [0.0], 1.0, {"verbose": -9})
        assert cma_es_default_population_size(d) == es.popsize
    with pytest.raises(ValueError, match="num_params must be an int >= 1"):
        cma_es_default_population_size(0)


# --- arguments, precision and guards -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"population_size": 1}, ValueError, "population_size must be an int >= 2"),
        ({"population_size": 6.0}, TypeError, "population_size must be an int"),
        ({"population_size": 6, "sigma": 0.0}, ValueError, "sigma must be positive"),
        ({"population_size": 6, "chunk_size": 0}, ValueError, "chunk_size must be an int >= 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        cma_es(**kwargs)


def test_state_follows_the_dtype_of_x0():
    """float32 params give a float32 state; float64 params under x64 a float64 one, and
    bfloat16 params a float32 covariance (never a bfloat16 one)."""

    def float_dtypes(tree):
        return {
            leaf.dtype for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)
        }

    assert float_dtypes(cma_es(6).init(jnp.zeros(3))) == {jnp.dtype(jnp.float32)}
    assert cma_es(6).init(jnp.zeros(3, jnp.bfloat16)).C.dtype == jnp.float32
    with jax.enable_x64(True):
        es = cma_es(6)
        state = es.init(jnp.zeros(3, jnp.float64))
        new, metrics = jax.jit(es.tell)(KEY, state, jnp.arange(6.0))
        assert float_dtypes(new) == {jnp.dtype(jnp.float64)}
        assert metrics["sigma"].dtype == jnp.float64


def test_rebuild_changes_the_population():
    es = cma_es(8, 0.3, chunk_size=4)
    bigger = es.rebuild(population_size=16)
    assert bigger.population_size == 16
    assert bigger.sampling.chunk_size == 4


def test_covariance_stays_symmetric_positive_definite():
    """300 generations on a rotated ellipsoid (d = 6, condition 1e4): C stays exactly
    symmetric and its eigenvalues positive, D^2 tracks them, and the mean converges."""
    d = 6
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))[0]
    scales = 10.0 ** np.linspace(0, 4, d)
    h = jnp.asarray(rotation.T @ np.diag(scales) @ rotation, jnp.float32)
    es = cma_es(cma_es_default_population_size(d), 0.5)

    def generation(state, key):
        x = es.ask(key, state)
        new, _ = es.tell(key, state, -jnp.einsum("ni,ij,nj->n", x, h, x))
        return new, (jnp.linalg.eigvalsh(new.C)[0], jnp.max(jnp.abs(new.C - new.C.T)))

    keys = jax.random.split(KEY, 300)
    final, (smallest, asymmetry) = jax.jit(lambda s: jax.lax.scan(generation, s, keys))(
        es.init(jnp.ones(d))
    )
    assert float(jnp.min(smallest)) > 0
    assert float(jnp.max(asymmetry)) == 0.0
    assert float(final.mean @ h @ final.mean) < 1e-8
    np.testing.assert_allclose(np.sort(final.D**2), np.linalg.eigvalsh(final.C), rtol=1e-3)
    assert float(jnp.max(final.D) / jnp.min(final.D)) ** 2 > 1e3  # C learned the shape


# --- termination, precision and runs ---------------------------------------------------------


def test_termination_options_are_pycmas_and_checked():
    """The factory's defaults are termination.Criteria's (pycma's); a bad value is named."""
    defaults = inspect.signature(cma_es).parameters
    for name, value in termination.Criteria()._asdict().items():
        assert defaults[name].default == value
    with pytest.raises(ValueError, match="tolx must be positive"):
        cma_es(6, tolx=-1.0)
    with pytest.raises(ValueError, match="tolstagnation must be an int >= 1"):
        cma_es(6, tolstagnation=0)


@pytest.mark.parametrize(
    ("options", "reason", "first"),
    [({}, "tolfun", 1), ({"tolfun": None, "tolfunhist": None}, "tolflatfitness", 2)],
)
def test_constant_fitness_stops(options, reason, first):
    """Constant fitness still moves CMA-ES (ties keep the members' order, as in pycma);
    stop says tolfun from the first generation (a zero fitness range), or with tolfun
    off, tolflatfitness from the second flat generation on, and nothing before."""
    es = cma_es(6, 0.5, **options)
    state = es.init(jnp.zeros(4))
    tell, stop = jax.jit(es.tell), jax.jit(es.stop)
    assert int(stop(state)) == 0
    codes = []
    for key in jax.random.split(KEY, 3):
        state, _ = tell(key, state, jnp.full(6, 2.0))
        codes.append(termination.STOP_REASONS[int(stop(state))])
    assert codes == [""] * (first - 1) + [reason] * (4 - first)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state))


def test_a_degenerate_problem_stops_on_the_condition_not_nan():
    """f depends on x_0 only: the distribution shrinks along x_0 alone, so C's condition
    grows without bound (pycma would rescale coordinates at 1e8, conditioncov_alleviate;
    the tutorial does not). With the fitness- and x-tolerances off, the float32 run
    stops on tolconditioncov with a finite state (float64 does the same, later)."""
    es = cma_es(8, 0.5, tolfun=None, tolfunhist=None, tolx=None)
    result = minimize(
        lambda x: x[0] ** 2,
        jnp.full(5, 0.5),
        strategy=es,
        key=KEY,
        num_generations=2000,
        progress=False,
        evaluate_mean=False,
    )
    assert result.stop_reason == "tolconditioncov"
    assert result.num_generations < 500
    state = jax.tree.map(np.asarray, result.state)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))
    assert (state.D.max() / state.D.min()) ** 2 > 1e14


ELLIPSOID_SCALES = 10.0 ** (6 * np.arange(5) / 4)


def ellipsoid_off_grid(x):
    """cond 1e6, optimum at 1 + 2^-24: exact in float64, halfway between float32's
    neighbours of 1 (x - 1 is a multiple of 2^-24 there), so in float32 f >= 1e6 * 2^-48
    ~ 3.6e-9 on the last coordinate alone."""
    return jnp.sum(jnp.asarray(ELLIPSOID_SCALES, x.dtype) * ((x - 1) - 2.0**-24) ** 2)


def test_float64_reaches_what_float32_cannot():
    """On a 5-d ellipsoid (condition 1e6) whose optimum float32 cannot represent, float64
    (under x64, x0 float64) reaches 1e-10 and stays float64 throughout; float32 stops on
    its own criteria (no effect of sigma on the mean) above 1e-9."""
    es = cma_es(cma_es_default_population_size(5), 0.5)
    options = {"strategy": es, "key": KEY, "progress": False, "evaluate_mean": False}
    single = minimize(ellipsoid_off_grid, jnp.zeros(5), num_generations=3000, **options)
    assert single.best_value > 1e-9
    assert single.stop_reason in ("noeffectaxis", "noeffectcoord", "tolfun", "tolx")
    with jax.enable_x64(True):
        double = minimize(
            ellipsoid_off_grid,
            jnp.zeros(5, jnp.float64),
            num_generations=3000,
            target=1e-10,
            **options,
        )
        assert ravel_pytree(double.best_params)[0].dtype == jnp.float64
    assert double.stop_reason == "target"
    assert double.best_value <= 1e-10
    assert double.state.C.dtype == jnp.float64


def test_sharded_generations_give_the_single_device_result():
    """Three generations (evaluate and tell, chunks of 4 members) sharded over 4 devices
    give the single-device state up to float32 rounding, which the eigenvectors of close
    eigenvalues amplify (hence 1e-4 of each leaf's scale)."""
    es = cma_es(16, 0.3, chunk_size=4)

    def run(state):
        def generation(state, key):
            new, _, _ = base.evaluate_and_tell(es, key, state, lambda x: -jnp.sum(x**2), 4)
            return new, None

        return jax.lax.scan(generation, state, jax.random.split(KEY, 3))[0]

    state = es.init(jnp.linspace(-2.0, 2.0, 12))
    whole = jax.jit(run)(state)
    sharded = jax.jit(parallel.shard(run, 4))(state)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(whole), strict=True):
        scale = max(float(jnp.max(jnp.abs(b))), 1.0) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)


@pytest.mark.slow
def test_evaluations_match_pycma():
    """Rosenbrock (d = 5, from 0, sigma 0.5) and a rotated ellipsoid (d = 10, condition
    1e6, from 1, sigma 1) to f <= 1e-8: the median evaluations over 5 keys are within
    1.5x of pycma's median over 5 seeds (both count members only, lambda = 8 and 10).
    Fixed keys and seeds: CMA-ES's run-to-run spread on these is about +-20%."""
    cma = pytest.importorskip("cma")
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 10)))[0]
    hessian = rotation.T @ np.diag(10.0 ** (6 * np.arange(10) / 9)) @ rotation

    def rosenbrock(x):  # NumPy or JAX arrays
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    def ellipsoid(x):
        return x @ (hessian if isinstance(x, np.ndarray) else jnp.asarray(hessian, x.dtype)) @ x

    for f, d, x0, sigma in ((rosenbrock, 5, 0.0, 0.5), (ellipsoid, 10, 1.0, 1.0)):
        es = cma_es(cma_es_default_population_size(d), sigma)
        ours = []
        for seed in range(5):
            result = minimize(
                f,
                jnp.full(d, x0),
                strategy=es,
                key=jax.random.key(seed),
                num_generations=10_000,
                target=1e-8,
                progress=False,
                evaluate_mean=False,
            )
            assert result.reached_target
            ours.append(result.num_evaluations)
        theirs = []
        for seed in range(1, 6):
            reference = cma.CMAEvolutionStrategy(
                d * [x0], sigma, {"seed": seed, "verbose": -9, "ftarget": 1e-8}
            )
            reference.optimize(lambda x, f=f: float(f(np.asarray(x))))
            assert reference.best.f <= 1e-8
            theirs.append(reference.countevals)
        ratio = np.median(ours) / np.median(theirs)
        assert 1 / 1.5 < ratio < 1.5, (f.__name__, ours, theirs)
