"""pycma's termination criteria as pure functions.

Oracles: the fitness-history criteria (tolfun, tolfunhist, tolstagnation, tolflatfitness)
against pycma 4.5 itself, fed the same sequences of f-values (``tell`` with our values,
then ``stop()``, whose bookkeeping only reads the f-values, the iteration count and the
population size); the distribution criteria on inputs built to fire them and on ordinary
ones, from their definitions.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from es_toolkit.strategies import termination
from es_toolkit.strategies.termination import (
    Criteria,
    Distribution,
    criteria,
    init_history,
    update_history,
)

FITNESS_CRITERIA = ("tolfun", "tolfunhist", "tolstagnation", "tolflatfitness")


# --- options -------------------------------------------------------------------------------


def test_defaults_are_pycmas():
    cma = pytest.importorskip("cma")
    options = cma.CMAOptions()
    defaults = Criteria()
    for name in ("tolfun", "tolfunhist", "tolx", "tolconditioncov", "tolupsigma"):
        assert getattr(defaults, name) == float(options[name].split("#")[0])
    assert defaults.tolflatfitness == int(options["tolflatfitness"].split("#")[0])
    expression = options["tolstagnation"].split("#")[0]
    for n, lam in ((2, 6), (10, 10), (40, 15)):
        want = eval(expression, {"N": n, "popsize": lam})  # pycma's own default string
        assert termination.default_tolstagnation(n, lam) == want
    assert criteria() == defaults


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"tolfun": -1.0}, ValueError, "tolfun must be positive"),
        ({"tolx": "small"}, TypeError, "tolx must be a positive finite"),
        ({"tolconditioncov": 0.0}, ValueError, "tolconditioncov must be positive"),
        ({"tolstagnation": 0}, ValueError, "tolstagnation must be an int >= 1"),
        ({"tolstagnation": "auto"}, ValueError, 'tolstagnation must be .*"default" or None'),
        ({"tolflatfitness": -1}, ValueError, "tolflatfitness must be an int >= 0"),
        ({"noeffectaxis": None}, TypeError, "noeffectaxis must be True or False"),
        ({"tolfacupx": 1e3}, TypeError, "unknown termination criteria tolfacupx"),
    ],
)
def test_bad_options_are_named(options, error, match):
    with pytest.raises(error, match=match):
        criteria(**options)


def test_options_switch_criteria_off():
    off = criteria(tolfun=None, tolstagnation=None, noeffectaxis=False, tolflatfitness=None)
    assert off.tolfun is None
    assert off.tolstagnation is None
    assert not off.noeffectaxis


# --- the fitness histories against pycma ------------------------------------------------


def run_both(f_values, num_params, stagnation="default"):
    """Feeds the f-values (generations x lambda, pycma's sign) to pycma and to our history;
    returns, per generation, the fitness criteria each says hold."""
    cma = pytest.importorskip("cma")
    lam = f_values.shape[1]
    es = cma.CMAEvolutionStrategy(
        num_params * [0.0],
        1.0,
        {
            "popsize": lam,
            "seed": 5,
            "verbose": -9,
            "tolx": 0,
            "tolconditioncov": 0,
            "tolfacupx": np.inf,
            "tolupsigma": np.inf,
            "tolxstagnation": False,
            "maxiter": np.inf,
            "tolstagnation": 0 if stagnation is None else "int(100 + 100 * N**1.5 / popsize)",
        },
    )
    tol = termination.resolve_tolstagnation(stagnation, num_params, lam)
    history = init_history(num_params, lam, jnp.float64, tol)
    update = jax.jit(lambda h, fitness: update_history(h, fitness, tol))

    @jax.jit
    def ours_now(h):
        return {
            "tolfun": termination.tolfun(h, 1e-11),
            "tolfunhist": termination.tolfunhist(h, 1e-12),
            "tolstagnation": jnp.asarray(False)
            if tol is None
            else termination.tolstagnation(h, num_params, lam, tol),
            "tolflatfitness": termination.tolflatfitness(h, 1),
        }

    theirs, ours = [], []
    for f in f_values:
        es.tell(es.ask(), [float(v) for v in f])
        theirs.append({name for name in es.stop() if name in FITNESS_CRITERIA})
        history = update(history, jnp.asarray(-f))
        ours.append({name for name, hit in ours_now(history).items() if bool(hit)})
    return theirs, ours


def test_tolfun_and_tolfunhist_match_pycma():
    """Converging values (the range shrinks 10x every generation), then a best that
    stays put while the rest of the population does not: tolfun fires first, on the
    same generation as in pycma; tolfunhist alone later."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        lam, generations = 8, 60
        scale = 10.0 ** -np.arange(generations, dtype=float)
        f = 1.0 + scale[:, None] * rng.uniform(size=(generations, lam))
        f[40:] = 1.0 + rng.uniform(size=(20, lam))  # current range large again...
        f[40:, 3] = 1.0  # ...but the best stays the same
        theirs, ours = run_both(f, num_params=4)
    assert ours == theirs
    tolfun = [g for g, s in enumerate(ours) if "tolfun" in s]
    assert tolfun
    assert 30 <= tolfun[0] < 40  # once the 25 recent bests span < 1e-11
    assert any("tolfunhist" in s and "tolfun" not in s for s in ours[40:])


def test_tolflatfitness_matches_pycma():
    """Flat stretches of 1, 2 and 3 generations (best no better than the value ranked
    int(0.75 lambda), including a population that is 75% tied at the best): pycma and
    ours stop after two flat generations in a row, and only then."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        lam = 10
        f = rng.uniform(size=(30, lam))
        f[5] = 0.5
        f[10:12] = 0.25
        f[20:23] = 7.0
        f[25] = [0.1] * 8 + [0.9] * 2  # ranked 0..7 tied at the best, int(0.75 * 10) = 7
        theirs, ours = run_both(f, num_params=3)
    assert ours == theirs
    flat = [g for g, s in enumerate(ours) if "tolflatfitness" in s]
    assert flat == [11, 21, 22]


@pytest.mark.parametrize("trend", [0.0, 0.02])
def test_tolstagnation_matches_pycma(trend):
    """750 generations of noisy values (N = 2, lambda = 50: tolstagnation = 105): with no
    trend pycma stops on stagnation once its long history holds over 100 entries, and
    ours on the same generations; improving values (``trend``) never stagnate in
    either."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        generations, lam = 750, 50
        f = rng.normal(size=(generations, lam)) - trend * np.arange(generations)[:, None]
        f[300, 7] = -100.0  # a best ever early on, then nothing better
        theirs, ours = run_both(f, num_params=2)
    assert ours == theirs
    stagnating = [g for g, s in enumerate(ours) if "tolstagnation" in s]
    assert bool(stagnating) == (trend == 0.0)
    if stagnating:
        assert stagnating[0] >= 5 * 101 - 1


def test_stagnation_history_is_capped():
    """The long history holds max(200, tolstagnation) entries at most (pycma: 20000)."""
    assert termination.sparse_capacity(105) == 200
    assert termination.sparse_capacity(5000) == 5000
    assert termination.sparse_capacity(10**6) == termination.HISTORY_CAP
    assert termination.sparse_capacity(None) == 1
    assert termination.recent_capacity(10, 10) == 40
    assert termination.recent_capacity(7, 8) == math.floor(10 + 30 * 7 / 8)


def test_non_finite_fitness_never_converges():
    """A generation with NaN or inf fitness has an unknown range: no tolfun, no best from
    it; all non-finite counts as flat, and the history stays finite."""
    update = jax.jit(update_history, static_argnums=2)
    history = init_history(3, 4, jnp.float32, 105)
    for _ in range(12):
        history = update(history, jnp.array([1.0, 1.0, jnp.nan, 1.0]), 105)
    assert not bool(termination.tolfun(history, 1e-11))
    assert bool(termination.tolfunhist(history, 1e-12))  # the best stayed 1.0
    assert float(history.best_ever) == 1.0
    nothing = update(init_history(3, 4, jnp.float32, 105), jnp.full(4, jnp.inf), 105)
    assert float(nothing.best_ever) == np.finfo(np.float32).min  # none yet
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(nothing))
    assert int(nothing.flat_generations) == 1


# --- the distribution criteria ------------------------------------------------------------


def test_tolx():
    small, ones = 1e-12, jnp.ones(3)
    assert bool(termination.tolx(small, ones, jnp.zeros(3), 1e-11))
    assert not bool(termination.tolx(1.0, ones, jnp.zeros(3), 1e-11))
    # a long evolution path, either sign, keeps it going (pycma's signed test would not)
    assert not bool(termination.tolx(small, ones, jnp.array([0.0, -100.0, 0.0]), 1e-11))
    assert not bool(termination.tolx(small, ones, jnp.array([0.0, 100.0, 0.0]), 1e-11))


def test_tolconditioncov():
    assert bool(termination.tolconditioncov(jnp.array([1.0, 1.0000001e7]), 1e14))
    assert not bool(termination.tolconditioncov(jnp.array([1.0, 0.99e7]), 1e14))
    # a floored eigenvalue (the smallest normal float32) and a huge one: no overflow
    floored = jnp.array([math.sqrt(np.finfo(np.float32).tiny), 1e30], jnp.float32)
    assert bool(termination.tolconditioncov(floored, 1e14))


def test_noeffectaxis_and_noeffectcoord():
    """In float32 (spacing 8 at 1e8) a step of 0.1 along an axis at 1e8 is lost."""
    mean = jnp.array([1e8, 1.0], jnp.float32)
    along_first = jnp.array([1.0, 0.0], jnp.float32)
    assert bool(termination.noeffectaxis(mean, jnp.float32(1.0), along_first))
    assert not bool(termination.noeffectaxis(mean, jnp.float32(1.0), jnp.ones(2)))
    assert bool(termination.noeffectcoord(mean, jnp.float32(1.0), jnp.ones(2)))
    assert not bool(termination.noeffectcoord(jnp.ones(2), jnp.float32(1.0), jnp.ones(2)))
    with jax.enable_x64(True):  # float64 resolves the same step
        mean64 = jnp.array([1e8, 1.0], jnp.float64)
        assert not bool(termination.noeffectcoord(mean64, 1.0, jnp.ones(2, jnp.float64)))


def test_tolupsigma():
    scales = jnp.array([0.5, 2.0])
    assert bool(termination.tolupsigma(jnp.float32(2.1e20), 1.0, scales, 1e20))
    assert not bool(termination.tolupsigma(jnp.float32(1.9e20), 1.0, scales, 1e20))


# --- the first reason ---------------------------------------------------------------------


def distribution(**changes):
    base = Distribution(
        mean=jnp.ones(3),
        sigma=jnp.float32(0.5),
        p_c=jnp.full(3, 0.1),
        stds=jnp.ones(3),
        scales=jnp.ones(3),
        axis=jnp.array([1.0, 0.0, 0.0]),
    )
    return base._replace(**changes)


def test_reason_is_the_first_that_holds_and_none_before_a_generation():
    """Codes follow STOP_REASONS' order; a switched-off criterion never fires; nothing
    fires before the first generation; it runs under jit."""
    options = criteria()
    history = init_history(3, 6, jnp.float32, 105)
    kwargs = {"num_params": 3, "population_size": 6, "sigma0": 0.5}
    reason = jax.jit(termination.reason, static_argnums=0, static_argnames=tuple(kwargs))
    converged = distribution(sigma=jnp.float32(1e-13), scales=jnp.array([1.0, 1.0, 1e8]))
    assert int(reason(options, history, converged, **kwargs)) == 0  # no generation yet
    history = update_history(history, jnp.arange(6.0), 105)
    assert int(reason(options, history, distribution(), **kwargs)) == 0
    assert int(reason(options, history, converged, **kwargs)) == termination.code("tolx")
    no_tolx = criteria(tolx=None)
    want = termination.code("tolconditioncov")
    assert int(reason(no_tolx, history, converged, **kwargs)) == want
    loose = criteria(tolx=None, tolconditioncov=None)  # sigma 1e-13 moves no coordinate
    assert int(reason(loose, history, converged, **kwargs)) == termination.code("noeffectaxis")
    quiet = criteria(tolx=None, tolconditioncov=None, noeffectaxis=False, noeffectcoord=False)
    assert int(reason(quiet, history, converged, **kwargs)) == 0
