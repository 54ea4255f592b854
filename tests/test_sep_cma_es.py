"""sep-CMA-ES against a NumPy update written from Ros and Hansen (2008) and Hansen's
tutorial, and against pycma's diagonal CMA-ES (``CMA_diagonal=True``) on an ellipsoid."""

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
from es_toolkit.strategies.sep_cma_es import sep_cma_es, separable_parameters

KEY = jax.random.key(3)
PARAMS = {"w": np.linspace(-1.0, 1.0, 6).reshape(3, 2), "layer": {"b": np.array([0.3, -0.2])}}
LAMBDA = 12


def flat64(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


def tutorial_constants(lam, n):
    """Hansen's tutorial (2016), Table 1, with c_1 and c_mu times (n + 2) / 3 (Ros and
    Hansen 2008)."""
    mu = lam // 2
    w = np.log((lam + 1) / 2) - np.log(np.arange(1, lam + 1))
    mu_eff = w[:mu].sum() ** 2 / (w[:mu] ** 2).sum()
    neg = w[w < 0]
    mu_eff_neg = neg.sum() ** 2 / (neg**2).sum()
    c_sigma = (mu_eff + 2) / (n + mu_eff + 5)
    d_sigma = 1 + 2 * max(0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma
    c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)
    c_1 = (n + 2) / 3 * 2 / ((n + 1.3) ** 2 + mu_eff)
    c_mu = min(1 - c_1, (n + 2) / 3 * 2 * (mu_eff - 2 + 1 / mu_eff) / ((n + 2) ** 2 + mu_eff))
    alpha = min(1 + c_1 / c_mu, 1 + 2 * mu_eff_neg / (mu_eff + 2), (1 - c_1 - c_mu) / (n * c_mu))
    weights = np.where(w >= 0, w / w[w > 0].sum(), alpha * w / -neg.sum())
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
    return dict(
        w=weights,
        mu=mu,
        mu_eff=mu_eff,
        c_sigma=c_sigma,
        d_sigma=d_sigma,
        c_c=c_c,
        c_1=c_1,
        c_mu=c_mu,
        chi_n=chi_n,
    )


def sep_update_np(mean, sigma, c, p_sigma, p_c, g, z, f):
    """One generation written in the x-space notation of the tutorial (y_i = sqrt(C) z_i,
    C = diag(c)), on the explicit population sorted by fitness (higher is better)."""
    n, lam = mean.size, len(f)
    k = tutorial_constants(lam, n)
    w = k["w"]
    y = np.sqrt(c) * z[np.argsort(-f, kind="stable")]
    y_w = sum(w[i] * y[i] for i in range(k["mu"]))
    new_mean = mean + sigma * y_w
    inv_sqrt_c = 1 / np.sqrt(c)
    ps = (1 - k["c_sigma"]) * p_sigma + math.sqrt(
        k["c_sigma"] * (2 - k["c_sigma"]) * k["mu_eff"]
    ) * (inv_sqrt_c * y_w)
    norm = np.linalg.norm(ps)
    h = norm / math.sqrt(1 - (1 - k["c_sigma"]) ** (2 * (g + 1))) < (1.4 + 2 / (n + 1)) * k["chi_n"]
    pc = (1 - k["c_c"]) * p_c + h * math.sqrt(k["c_c"] * (2 - k["c_c"]) * k["mu_eff"]) * y_w
    w_circ = np.array(
        [
            wi if wi >= 0 else wi * n / np.sum((inv_sqrt_c * yi) ** 2)
            for wi, yi in zip(w, y, strict=True)
        ]
    )
    delta = (1 - h) * k["c_c"] * (2 - k["c_c"])
    new_c = (1 + k["c_1"] * delta - k["c_1"] - k["c_mu"] * w.sum()) * c
    new_c = (
        new_c
        + k["c_1"] * pc**2
        + k["c_mu"] * sum(wc * yi**2 for wc, yi in zip(w_circ, y, strict=True))
    )
    new_sigma = sigma * math.exp(min(1.0, k["c_sigma"] / k["d_sigma"] * (norm / k["chi_n"] - 1)))
    return dict(mean=new_mean, sigma=new_sigma, diagonal=new_c, path_sigma=ps, path_c=pc, h=h)


def unflatten_like(like, flat):
    return ravel_pytree(like)[1](jnp.asarray(flat, ravel_pytree(like)[0].dtype))


def a_state(es, params, path_scale):
    """A state a few generations in: an uneven diagonal and non-zero paths."""
    state = es.init(params)
    n = ravel_pytree(params)[0].size
    rng = np.random.default_rng(0)
    return state._replace(
        sigma=jnp.asarray(0.7, state.sigma.dtype),
        diagonal=unflatten_like(params, np.exp(rng.normal(size=n))),
        path_sigma=unflatten_like(params, path_scale * rng.normal(size=n)),
        path_c=unflatten_like(params, rng.normal(size=n)),
        generation=jnp.asarray(3, jnp.int32),
    )


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize(("path_scale", "h_sigma"), [(0.5, True), (5.0, False)])
def test_one_update_matches_the_numpy_oracle(x64, path_scale, h_sigma):
    """Members and the update (mean, sigma, diagonal, both paths) equal the NumPy oracle on
    the same noise, unchunked, in chunks of 5 (a remainder chunk) and from ``directions``.
    A short p_sigma keeps h_sigma = 1; a long one stalls p_c (h_sigma = 0) and makes sigma
    hit its limit of a factor e. Under x64 everything is float64 and agrees to 1e-12."""
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        params = jax.tree.map(lambda p: jnp.asarray(p, dtype), PARAMS)
        es = sep_cma_es(LAMBDA, 0.7)
        state = a_state(es, params, path_scale)
        z = sampling_lib.sample_directions(es.sampling, KEY, 0, LAMBDA, state.mean)
        z_flat = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(z), np.float64)
        mean, c = flat64(state.mean), flat64(state.diagonal)
        members = jax.jit(es.ask)(KEY, state)
        x = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(members), np.float64)
        rtol = 1e-12 if x64 else 2e-5
        np.testing.assert_allclose(x, mean + 0.7 * np.sqrt(c) * z_flat, rtol=rtol, atol=rtol)
        fitness = -np.sum(np.arange(1, x.shape[1] + 1) * (x - 0.5) ** 2, axis=1)
        want = sep_update_np(
            mean, 0.7, c, flat64(state.path_sigma), flat64(state.path_c), 3, z_flat, fitness
        )
        assert want["h"] == h_sigma
        chunked = sep_cma_es(LAMBDA, 0.7, chunk_size=5)
        fitness = jnp.asarray(fitness, dtype)
        results = [
            jax.jit(es.tell)(KEY, state, fitness),
            jax.jit(chunked.tell)(KEY, state, fitness),
            jax.jit(es.tell)(jax.random.key(99), state, fitness, directions=z),
        ]
        for new, metrics in results:
            assert {
                leaf.dtype
                for leaf in jax.tree.leaves(new)
                if jnp.issubdtype(leaf.dtype, jnp.floating)
            } == {jnp.dtype(dtype)}
            for name in ("mean", "diagonal", "path_sigma", "path_c"):
                np.testing.assert_allclose(
                    flat64(getattr(new, name)), want[name], rtol=rtol, atol=rtol
                )
            np.testing.assert_allclose(float(new.sigma), want["sigma"], rtol=rtol)
            assert int(new.generation) == 4
            np.testing.assert_allclose(
                float(metrics["grad_norm"]), np.linalg.norm(want["mean"] - mean), rtol=1e-4
            )


def test_constants_against_pycma():
    """The positive weights and mu_eff are pycma's; the separable learning rates agree with
    pycma's ``c1_sep`` and ``cmu_sep`` within a factor 1.5: pycma uses its own closed forms
    for them, :math:`1 / (d + 2 \\sqrt d + \\mu_\\mathrm{eff} / d)` and similar, where we
    scale the tutorial's rates by (d + 2) / 3 as Ros and Hansen do."""
    cma = pytest.importorskip("cma")
    for n in (5, 10, 100, 10_000):
        lam = 4 + math.floor(3 * math.log(n))
        es = cma.CMAEvolutionStrategy(np.ones(n), 1.0, {"CMA_diagonal": True, "verbose": -9})
        assert es.sp.popsize == lam
        k = separable_parameters(n, lam)
        pycma_weights = np.asarray(es.sp.weights)
        np.testing.assert_allclose(k.weights[: lam // 2], pycma_weights[: lam // 2], rtol=1e-12)
        assert k.mueff == pytest.approx(es.sp.weights.mueff, rel=1e-12)
        assert 1 / 1.5 < k.c_1 / es.sp.c1_sep < 1.5
        assert 1 / 1.5 < k.c_mu / es.sp.cmu_sep < 1.5
        assert all(k.weights[(lam + 1) // 2 :] < 0)
        # The active update never makes the diagonal negative (Hansen's alpha_posdef).
        assert -k.weights[lam // 2 :].sum() <= (1 - k.c_1 - k.c_mu) / (n * k.c_mu) + 1e-12


def ellipsoid(x, xp=jnp):
    d = x.shape[-1]
    return xp.sum(10.0 ** (6 * xp.arange(d) / (d - 1)) * x**2, axis=-1)


def evaluations_to_target(seed, d=10, target=1e-8, generations=600):
    """f evaluations until a member reaches ``target`` on the ellipsoid (float64), from
    x0 = ones with sigma = 1, or None."""
    lam = 4 + math.floor(3 * math.log(d))
    es = sep_cma_es(lam, 1.0)

    def generation(state, key):
        f = ellipsoid(es.ask(key, state))
        return es.tell(key, state, -f)[0], jnp.min(f)

    run = jax.jit(lambda s, keys: jax.lax.scan(generation, s, keys)[1])
    best = np.asarray(
        run(es.init(jnp.ones(d)), jax.random.split(jax.random.key(seed), generations))
    )
    hit = np.flatnonzero(best <= target)
    return None if hit.size == 0 else (int(hit[0]) + 1) * lam


def test_reaches_1e_minus_8_on_the_ellipsoid_like_pycma():
    """The separable ellipsoid (condition 1e6), d = 10, float64: every one of 5 seeds
    reaches f <= 1e-8, and the median number of evaluations is within 1.5x of pycma's
    diagonal CMA-ES (5 seeds, same x0, sigma and target). Both need about 2,000
    evaluations; a wrong learning rate or step-size rule costs far more than 1.5x."""
    cma = pytest.importorskip("cma")
    with jax.enable_x64(True):
        ours = [evaluations_to_target(seed) for seed in range(5)]
    assert None not in ours
    theirs = []
    for seed in range(1, 6):
        options = {"CMA_diagonal": True, "seed": seed, "verbose": -9, "ftarget": 1e-8}
        es = cma.CMAEvolutionStrategy(np.ones(10), 1.0, options)
        es.optimize(lambda x: float(ellipsoid(np.asarray(x), np)))
        assert es.result.fbest <= 1e-8
        theirs.append(es.result.evaluations)
    ratio = np.median(ours) / np.median(theirs)
    assert 1 / 1.5 < ratio < 1.5, (ours, theirs)


def test_contract_under_jit_in_chunks_and_with_non_finite_fitness():
    """Three generations in a jitted ``lax.scan`` equal separate calls; chunks of 4 (with a
    remainder) ask and tell the same; NaN and +-inf rank exactly like values below the
    worst finite one (in member order) and leave the state finite, even when all are NaN;
    ``evaluate_and_tell`` (noise drawn once) equals ask-then-tell; ``rebuild`` changes the
    population."""
    es, chunked = sep_cma_es(10, 0.5), sep_cma_es(10, 0.5, chunk_size=4)
    params = jax.tree.map(jnp.asarray, PARAMS)
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
    assert {"fitness_mean", "num_non_finite", "grad_norm", "sigma", "axis_ratio"} <= set(metrics)
    members = es.ask(keys[0], state)
    fitness = jax.vmap(f)(members)
    first = tell(keys[0], state, fitness)
    assert_trees_close(first, jax.tree.map(lambda leaf: leaf[0], (states, metrics)))
    assert_trees_close(chunked.ask(keys[0], state), members, rtol=0, atol=0)
    assert_trees_close(chunked.ask(keys[0], state, 4, 4), jax.tree.map(lambda m: m[4:8], members))
    assert_trees_close(tell_in_chunks(keys[0], state, fitness), first)
    once = base.evaluate_and_tell(es, keys[0], state, f)
    assert_trees_close(once, (*first, fitness))

    fitness = fitness.at[9].set(jnp.min(fitness) - 1.0)  # the strict worst finite, last
    bad = fitness.at[jnp.array([0, 3, 4])].set(jnp.array([jnp.nan, jnp.inf, -jnp.inf]))
    worst = fitness.at[jnp.array([0, 3, 4])].set(fitness[9] - 1.0)
    got, got_metrics = tell(keys[0], state, bad)
    assert int(got_metrics["num_non_finite"]) == 3
    # The distribution moves alike; the termination history records the non-finite range.
    assert_trees_close(
        got._replace(history=None), tell(keys[0], state, worst)[0]._replace(history=None)
    )
    assert all_finite(tell(keys[0], state, jnp.full(10, jnp.nan))[0])
    with pytest.raises(ValueError, match=r"fitness must have shape \(10,\)"):
        tell(KEY, state, jnp.zeros(9))
    assert es.rebuild(population_size=20).population_size == 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"population_size": 1}, "population_size must be an int >= 2"),
        ({"population_size": 10, "sigma": 0.0}, "sigma must be positive"),
        ({"population_size": 10, "chunk_size": 0}, "chunk_size must be an int >= 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sep_cma_es(**kwargs)


def test_a_large_problem_runs_in_chunks():
    """d = 100,000 parameters in two leaves, 12 members told 5 at a time (a remainder
    chunk of 2): the same finite update as all at once, to float32 rounding of the sums."""
    es, chunked = sep_cma_es(12, 0.1), sep_cma_es(12, 0.1, chunk_size=5)
    state = es.init({"a": jnp.ones((300, 300)), "b": jnp.zeros(10_000)})

    def generation(state):
        members = es.ask(KEY, state)
        fitness = -jax.vmap(lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 2))(members)
        return es.tell(KEY, state, fitness)[0], chunked.tell(KEY, state, fitness)[0]

    whole, in_chunks = jax.jit(generation)(state)
    assert all_finite(whole)
    assert_trees_close(in_chunks, whole, 1e-5, scaled=True)


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def run_until_stop(es, f, x0, key, limit):
    """(generations, stop reason, best f of the last generation) of a run of ``es`` on f
    (minimized) until ``stop`` says so or ``limit`` generations."""

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
    return generation, termination.STOP_REASONS[int(code)], float(best)


def test_stops_on_tolfun_like_pycma():
    """The ellipsoid, d = 10, float64, pycma's default criteria: 3 seeds each stop on
    tolfun, as pycma's diagonal CMA-ES does, with a best f below 1e-12, and after a
    median number of generations within 1.5x of pycma's (both near 290)."""
    cma = pytest.importorskip("cma")
    with jax.enable_x64(True):
        es = sep_cma_es(10, 1.0)
        ours = [
            run_until_stop(es, ellipsoid, jnp.ones(10), jax.random.key(s), 2000) for s in range(3)
        ]
    assert {reason for _, reason, _ in ours} == {"tolfun"}
    assert max(best for _, _, best in ours) < 1e-12
    theirs = []
    for seed in range(1, 4):
        es = cma.CMAEvolutionStrategy(
            np.ones(10), 1.0, {"CMA_diagonal": True, "seed": seed, "verbose": -9}
        )
        es.optimize(lambda x: float(ellipsoid(np.asarray(x), np)))
        assert "tolfun" in es.stop()
        theirs.append(es.countiter)
    ratio = np.median([g for g, _, _ in ours]) / np.median(theirs)
    assert 1 / 1.5 < ratio < 1.5, (ours, theirs)


def test_flat_fitness_stops():
    """Constant fitness: a zero range stops on tolfun after the first generation; with
    tolfun and tolfunhist off, on tolflatfitness after two (more than one flat one)."""
    for options, reason, generations in [
        ({}, "tolfun", 1),
        ({"tolfun": None, "tolfunhist": None}, "tolflatfitness", 2),
    ]:
        got = run_until_stop(sep_cma_es(8, **options), lambda x: 0 * x[0], jnp.ones(5), KEY, 10)
        assert got[:2] == (generations, reason)


def test_termination_options_are_checked():
    with pytest.raises(ValueError, match="tolx must be positive"):
        sep_cma_es(10, tolx=-1.0)
    with pytest.raises(ValueError, match="tolstagnation must be"):
        sep_cma_es(10, tolstagnation="never")


@pytest.mark.parametrize("chunk_size", [None, 8])
def test_minimize_does_not_depend_on_devices(chunk_size):
    """32 members sharded over 2 and 8 devices give the unsharded run's mean and best
    value, to float32 rounding of the psum (the order of the partial sums)."""
    f = get_objective("rastrigin").fn
    x0 = jnp.linspace(-2.0, 2.0, 12)
    options = {"strategy": sep_cma_es(32, 0.3), "num_generations": 12, "progress": False}
    expected = minimize(f, x0, chunk_size=chunk_size, **options)
    for devices in (2, 8):
        got = minimize(f, x0, chunk_size=chunk_size, mesh=devices, **options)
        assert_trees_close(got.state.mean, expected.state.mean, 1e-5, scaled=True)
        assert got.best_value == pytest.approx(expected.best_value, rel=1e-5)


@pytest.mark.parametrize(("d", "population"), [(2, 96), (3, 112), (5, 256), (20, 3072)])
def test_weights_stay_finite_for_the_populations_restarts_reach(d, population):
    """At these sizes c_1 + c_mu reaches 1, so CMA-ES's own negative weights are all 0;
    the separable ones are rescaled from the raw log weights and stay finite (0 here)."""
    weights = separable_parameters(d, population).weights
    assert np.all(np.isfinite(weights))
    assert weights[: population // 2].sum() == pytest.approx(1.0)
    assert np.all(weights[population // 2 :] <= 0)
