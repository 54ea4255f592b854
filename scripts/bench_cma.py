"""Speed and large-scale benchmark of es_toolkit's CMA-ES family against pycma and evosax.

Part 1, time per generation of CMA-ES at the default population :math:`4 + \\lfloor 3 \\ln d
\\rfloor`, on an axis-parallel ellipsoid (condition :math:`10^6`, from ``x0 = 1``,
:math:`\\sigma_0 = 1`), a JAX objective cheap next to the optimizer:

* ours: ``es_toolkit.minimize(f, x0, strategy=cma_es(...), block_size=..., evaluate_mean=
  False, progress=False)``; and, for reference, a plain jitted ``lax.scan`` over the public
  ``ask`` (the members), the vmapped ``f`` and ``tell`` (which draws the noise again);
* evosax 0.3.2's ``CMA_ES``: ``ask``, vmapped ``f``, ``tell`` in a jitted ``lax.scan``,
  float32, as its users write it;
* pycma's ``CMAEvolutionStrategy`` (``verbose=-9``): the time spent in ``es.ask()`` and
  ``es.tell()``, the objective (NumPy) left out.

Times are the process's CPU time (every side is single-threaded, so this is its time on
one core, without the waits of a shared machine; wall times are saved too). A JAX side's
time per generation is the steady state after compilation, ``(t(long) - t(short)) / (long
- short)`` from the medians over repeats of whole runs of two lengths, so that the fixed
cost of a call drops out. The sides alternate within each repeat. The same
runs of ours (and pycma) are repeated under ``jax_enable_x64`` with a float64 ``x0``.

Part 2, large scale: ``lm_ma_es`` and ``sep_cma_es`` against evosax's ``LM_MA_ES`` and
``Sep_CMA_ES`` at d = 10,000 in float32 on a rotated ellipsoid, :math:`f(x) = \\sum_i
w_{\\pi(i)} (Q x_\\sigma)_i^2` with :math:`w_i = 10^{6 (i - 1)/(d - 1)}`, :math:`Q` block
diagonal with Haar-random orthogonal 40 x 40 blocks and :math:`\\pi, \\sigma` random
permutations (the permuted block-diagonal rotations of bbob-largescale): f at the mean
every few generations over a fixed budget of generations, whether any member's f was NaN or
infinite, and the time per generation. Ours runs ``base.evaluate_and_tell`` (what
``minimize`` runs each generation) in a jitted ``lax.scan``, evosax ``ask``, vmapped ``f``,
``tell``.

Every process runs single-threaded, the same for all sides: ``OPENBLAS_NUM_THREADS=1``
and ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"``.
Each part's configuration runs in a fresh process (``--quick`` runs them in this one).

evosax and pycma are benchmark-only tools, not es_toolkit dependencies. Install them in a
separate virtual environment (the dev venv keeps its jax)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -e . "jax==0.10.2" "jaxlib==0.10.2" "evosax==0.3.2" \\
        "cma==4.5.0"

Usage::

    .venv-bench/bin/python scripts/bench_cma.py            # full, about 15 minutes
    .venv-bench/bin/python scripts/bench_cma.py --quick    # seconds, prints only
    .venv-bench/bin/python scripts/bench_cma.py --from-json docs/results/cma.json
    # the same, rewriting the section and redrawing its pictures (docs/images/cma_*.png):
    .venv-bench/bin/python scripts/bench_cma.py --from-json docs/results/cma.json \\
        --output docs/benchmarks.md
"""

import os

# Single-threaded everywhere, set before numpy and jax load their thread pools.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import argparse
import importlib
import json
import math
import platform
import statistics
import sys
import time

import _bench
import _plots

THREAD_ENV = {name: os.environ[name] for name in ("OPENBLAS_NUM_THREADS", "XLA_FLAGS")}

SECTION_TITLE = "## CMA-ES family: speed and large scale"
RUN_COMMAND = ".venv-bench/bin/python scripts/bench_cma.py"
INSTALL_COMMAND = (
    'python3 -m venv .venv-bench && .venv-bench/bin/pip install -e . "jax==0.10.2" '
    '"jaxlib==0.10.2" "evosax==0.3.2" "cma==4.5.0"'
)
VERSIONS_OF = ("jax", "jaxlib", "evosax", "cma", "numpy")
DEFAULT_JSON = _bench.ROOT / "docs" / "results" / "cma.json"
IMAGE = _bench.ROOT / "docs" / "images" / "cma_large_scale.png"
SPEED_IMAGE = "cma_speed.png"  # in images/ next to the Markdown file

SIDES = ("ours", "ours_scan", "evosax", "pycma")
SIDE_LABELS = {
    "ours": "ours, `minimize`",
    "ours_scan": "ours, `ask` + `tell` scan",
    "evosax": "evosax `CMA_ES`",
    "pycma": "pycma",
}
JAX_SIDES = ("ours", "ours_scan", "evosax")
SIDE_COLORS = {
    "ours": _plots.OURS,
    "ours_scan": _plots.OURS_VARIANT,
    "evosax": _plots.EVOSAX,
    "pycma": _plots.PYCMA,
}
CONDITION = 1e6  # of both ellipsoids
SIGMA0 = 1.0
SPEED_DIMS = (10, 20, 100, 1000)
X64_DIMS = (10, 20)
PYCMA_TARGET_DIMS = (10, 20)  # ours >= PYCMA_TARGET x faster there
PYCMA_TARGET = 5.0
EVOSAX_TARGET_DIMS = (10, 100, 1000)  # ours at least as fast there

LARGE_STRATEGIES = {"lm_ma_es": "LM_MA_ES", "sep_cma_es": "Sep_CMA_ES"}  # ours: evosax's
LARGE_LABELS = {"lm_ma_es": "LM-MA-ES", "sep_cma_es": "sep-CMA-ES"}
LIBRARIES = ("ours", "evosax")
ROTATION_BLOCK = 40
ROTATION_SEED = 2024


def log(message):
    print(message, flush=True)


def available(module):
    """Whether ``module`` imports here."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Objectives.
# --------------------------------------------------------------------------------------


def ellipsoid_weights(d, condition=CONDITION):
    """:math:`w_i = c^{(i - 1)/(d - 1)}`, ``i = 1..d``, as float64 NumPy."""
    import numpy as np

    return condition ** (np.arange(d) / max(d - 1, 1))


def ellipsoid(d, dtype):
    """The axis-parallel ellipsoid :math:`\\sum_i w_i x_i^2` as a JAX function of one x."""
    import jax.numpy as jnp

    weights = jnp.asarray(ellipsoid_weights(d), dtype)

    def f(x):
        return jnp.sum(weights * x**2)

    return f


def rotated_ellipsoid(d, dtype, block=ROTATION_BLOCK, seed=ROTATION_SEED):
    """:math:`f(x) = \\sum_i w_{\\pi(i)} (Q x_\\sigma)_i^2`: ``Q`` block diagonal with
    Haar-random orthogonal ``block x block`` blocks, ``pi`` and ``sigma`` random
    permutations, so each block mixes coordinates of every scale (condition
    ``CONDITION``) at O(d block) cost per evaluation."""
    import jax.numpy as jnp
    import numpy as np

    if d % block:
        raise ValueError(f"d must be a multiple of the rotation block {block}, got {d}")
    rng = np.random.default_rng(seed)
    gaussian = rng.standard_normal((d // block, block, block))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]  # Haar, not QR-biased
    rotation = jnp.asarray(q, dtype)
    shuffle = jnp.asarray(rng.permutation(d))
    weights = jnp.asarray(ellipsoid_weights(d)[rng.permutation(d)], dtype)

    def f(x):
        u = x[shuffle].reshape(d // block, block)
        v = jnp.einsum("bij,bj->bi", rotation, u).reshape(d)
        return jnp.sum(weights * v**2)

    return f


# --------------------------------------------------------------------------------------
# Part 1: time per generation.
# --------------------------------------------------------------------------------------


def speed_lengths(d, quick):
    """``(short, long, block_size)``: the two run lengths and ``minimize``'s block. Runs
    stop before CMA-ES converges on the ellipsoid, so no stop criterion ends them early,
    and long runs of large d are short ones, each generation being expensive."""
    if quick:
        return 20, 60, 20
    if d <= 20:
        return 50, 350, 50
    if d <= 200:
        return 50, 200, 50
    return 16, 48, 16


def population_size(d):
    from es_toolkit.strategies import cma_es_default_population_size

    return cma_es_default_population_size(d)


class Clock:
    """Seconds since it started, as ``(cpu, wall)``: the process's CPU time (all its
    threads; every side runs single-threaded, so this is its time on one core, without
    the waits of a shared machine) and the wall time."""

    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def read(self):
        return time.process_time() - self.cpu, time.perf_counter() - self.wall


def compiled_by_length(make_run):
    """``run(num_generations, seed) -> ((cpu s, wall s), f at the final mean)`` for a
    jitted ``make_run(num_generations)(key)``, compiled once per length (untimed)."""
    import jax

    compiled = {}

    def run(num_generations, seed):
        if num_generations not in compiled:
            lowered = jax.jit(make_run(num_generations)).lower(jax.random.key(0))
            compiled[num_generations] = lowered.compile()
        key = jax.random.key(seed)
        clock = Clock()
        value = float(compiled[num_generations](key))
        return clock.read(), value

    return run


def ours_minimize_timer(d, dtype, block_size):
    import jax
    import jax.numpy as jnp

    from es_toolkit import minimize
    from es_toolkit.strategies import cma_es

    strategy = cma_es(population_size(d), SIGMA0)
    f = ellipsoid(d, dtype)
    x0 = jnp.ones(d, dtype)

    def run(num_generations, seed):
        clock = Clock()
        result = minimize(
            f,
            x0,
            strategy=strategy,
            num_generations=num_generations,
            key=jax.random.key(seed),
            block_size=block_size,
            progress=False,
            evaluate_mean=False,
        )
        value = float(result.best_value)
        seconds = clock.read()
        if int(result.num_generations) != num_generations:
            raise RuntimeError(
                f"minimize stopped after {int(result.num_generations)} of "
                f"{num_generations} generations ({result.stop_reason}) at d = {d}"
            )
        return seconds, value

    return run


def ours_scan_timer(d, dtype):
    """The public contract in a plain scan: ``ask``, vmapped f, ``tell`` (fitness = -f)."""
    import jax
    import jax.numpy as jnp

    from es_toolkit.strategies import cma_es

    strategy = cma_es(population_size(d), SIGMA0)
    f = ellipsoid(d, dtype)
    x0 = jnp.ones(d, dtype)

    def make_run(num_generations):
        def run(key):
            def step(state, generation):
                gen_key = jax.random.fold_in(key, generation)
                members = strategy.ask(gen_key, state)
                fitness = -jax.vmap(f)(members)
                return strategy.tell(gen_key, state, fitness)[0], None

            state, _ = jax.lax.scan(step, strategy.init(x0), jnp.arange(num_generations))
            return f(state.mean)

        return run

    return compiled_by_length(make_run)


def evosax_generation(algorithm, params, f, key, state, generation):
    """``(state, fitness)`` after one generation of evosax as its users write it: ``ask``,
    the vmapped objective, ``tell`` (evosax minimizes)."""
    import jax

    ask_key, tell_key = jax.random.split(jax.random.fold_in(key, generation))
    population, state = algorithm.ask(ask_key, state, params)
    fitness = jax.vmap(f)(population)
    state, _ = algorithm.tell(tell_key, population, fitness, state, params)
    return state, fitness


def evosax_timer(d, dtype):
    import jax
    import jax.numpy as jnp
    from evosax.algorithms import CMA_ES

    f = ellipsoid(d, dtype)
    x0 = jnp.ones(d, dtype)
    algorithm = CMA_ES(population_size(d), x0)
    params = algorithm.default_params.replace(std_init=jnp.asarray(SIGMA0, dtype))

    def make_run(num_generations):
        def run(key):
            def step(state, generation):
                return evosax_generation(algorithm, params, f, key, state, generation)[0], None

            state = algorithm.init(key, x0, params)
            state, _ = jax.lax.scan(step, state, jnp.arange(num_generations))
            return f(state.mean)

        return run

    return compiled_by_length(make_run)


def pycma_timer(d):
    """Seconds ``(cpu, wall)`` in ``es.ask()`` + ``es.tell()`` over a run; the NumPy
    objective between them excluded."""
    import cma
    import numpy as np

    weights = ellipsoid_weights(d)

    def run(num_generations, seed):
        options = {"verbose": -9, "popsize": population_size(d), "seed": seed + 1}
        es = cma.CMAEvolutionStrategy(np.ones(d), SIGMA0, options)
        spent = np.zeros(2)
        for _ in range(num_generations):
            clock = Clock()
            members = es.ask()
            spent += clock.read()
            fitness = (np.asarray(members) ** 2 @ weights).tolist()
            clock = Clock()
            es.tell(members, fitness)
            spent += clock.read()
        return tuple(spent.tolist()), float(np.asarray(es.mean) ** 2 @ weights)

    return run


def speed_case(case):
    """One dimension's speed measurements, the sides alternating within each repeat."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", case["x64"])
    dtype = jnp.float64 if case["x64"] else jnp.float32
    d, short, long = case["d"], case["short"], case["long"]
    builders = {
        "ours": lambda: ours_minimize_timer(d, dtype, case["block_size"]),
        "ours_scan": lambda: ours_scan_timer(d, dtype),
        "evosax": lambda: evosax_timer(d, dtype),
        "pycma": lambda: pycma_timer(d),
    }
    timers, compile_s = {}, {}
    for side in case["sides"]:
        start = time.perf_counter()
        timers[side] = builders[side]()
        for length in lengths_of(side, short, long):  # compiles; one untimed run of each
            timers[side](length, 0)
        compile_s[side] = time.perf_counter() - start
    times = {side: {length: [] for length in lengths_of(side, short, long)} for side in timers}
    finals = {side: [] for side in timers}
    for repeat in range(case["repeats"]):
        shift = repeat % len(timers)
        for side in list(timers)[shift:] + list(timers)[:shift]:
            for length in lengths_of(side, short, long):
                seconds, value = timers[side](length, repeat + 1)
                times[side][length].append(seconds)
            finals[side].append(value)
    sides = {}
    for side in timers:
        sides[side] = {
            "compile_s": compile_s[side],
            "times_s": {str(length): values for length, values in times[side].items()},
            "median_final": statistics.median(finals[side]),
        }
        for clock, name in enumerate(("us_per_generation", "wall_us_per_generation")):
            median = {length: statistics.median(t[clock] for t in values)
                      for length, values in times[side].items()}  # fmt: skip
            if side == "pycma":
                per_generation = median[long] / long
            else:
                per_generation = (median[long] - median[short]) / (long - short)
            sides[side][name] = per_generation * 1e6
    return {**case, "population_size": population_size(d), "sides": sides}


def lengths_of(side, short, long):
    """The run lengths a side is timed at: pycma's time is summed over its generations,
    the JAX sides' is the difference between two lengths."""
    return (long,) if side == "pycma" else (short, long)


def default_repeats(d, quick):
    """Enough repeats that the medians of short runs (milliseconds at small d, on a shared
    machine) are stable."""
    if quick:
        return 1
    return 30 if d <= 20 else 10 if d <= 200 else 3


def speed_cases(args):
    cases = []
    for x64, dims in ((False, args.dims), (True, args.x64_dims)):
        for d in dims:
            short, long, block = speed_lengths(d, args.quick)
            sides = [s for s in args.sides if not (x64 and s == "evosax")]
            cases.append(
                {"kind": "speed", "d": d, "x64": x64, "short": short, "long": long,
                 "block_size": block, "repeats": args.repeats or default_repeats(d, args.quick),
                 "sides": sides}
            )  # fmt: skip
    return cases


# --------------------------------------------------------------------------------------
# Part 2: large scale.
# --------------------------------------------------------------------------------------


def our_factory(name):
    """``es_toolkit.strategies``' factory ``name`` (from its module if not registered)."""
    from es_toolkit import strategies

    if name in strategies.STRATEGIES:
        return strategies.STRATEGIES[name]
    return getattr(importlib.import_module(f"es_toolkit.strategies.{name}"), name)


def large_runners(case, f, x0):
    """``{library: (init(key), advance(state, key, first) -> (state, first generation
    with a non-finite f, or -1))}``: ``advance`` runs generations ``first, first + 1,
    ...`` (``case["record_every"]`` of them), jitted."""
    import jax
    import jax.numpy as jnp

    from es_toolkit.strategies.base import evaluate_and_tell

    name, lam = case["strategy"], case["population_size"]
    generations = {}
    if "ours" in case["libraries"]:
        strategy = our_factory(name)(lam, SIGMA0)

        def ours_generation(key, state, generation):
            gen_key = jax.random.fold_in(key, generation)
            state, _, fitness = evaluate_and_tell(strategy, gen_key, state, lambda x: -f(x))
            return state, fitness

        generations["ours"] = (lambda key: strategy.init(x0), ours_generation)
    if "evosax" in case["libraries"]:
        from evosax import algorithms

        algorithm = getattr(algorithms, LARGE_STRATEGIES[name])(lam, x0)
        params = algorithm.default_params.replace(std_init=jnp.asarray(SIGMA0, x0.dtype))
        generations["evosax"] = (
            lambda key: algorithm.init(key, x0, params),
            lambda key, state, g: evosax_generation(algorithm, params, f, key, state, g),
        )

    def advancing(generation):
        def advance(state, key, first):
            def step(state, g):
                state, fitness = generation(key, state, g)
                return state, jnp.where(jnp.all(jnp.isfinite(fitness)), -1, g)

            state, flags = jax.lax.scan(step, state, first + jnp.arange(case["record_every"]))
            flagged = jnp.where(flags < 0, jnp.iinfo(jnp.int32).max, flags)
            return state, jnp.where(jnp.all(flags < 0), -1, jnp.min(flagged))

        return jax.jit(advance)

    return {library: (init, advancing(gen)) for library, (init, gen) in generations.items()}


def large_case(case):
    """One strategy at large d: the libraries alternate, ``record_every`` generations at
    a time, and f at the mean is recorded in between."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", False)
    d = case["d"]
    f = rotated_ellipsoid(d, jnp.float32)
    x0 = jnp.ones(d, jnp.float32)
    case = {**case, "population_size": population_size(d)}
    runners = large_runners(case, f, x0)
    value = jax.jit(lambda state: f(state.mean))  # both libraries' states have a flat mean
    key = jax.random.key(case["seed"])
    results, states = {}, {}
    for library, (init, advance) in runners.items():
        start = time.perf_counter()
        state = init(key)
        first = jnp.asarray(0, jnp.int32)
        # Two untimed calls compile for the initial state's types and for advance's own
        # (an initial state may hold weakly typed scalars).
        jax.block_until_ready(advance(advance(state, key, first)[0], key, first))
        states[library] = state
        results[library] = {
            "compile_s": time.perf_counter() - start,
            "curve": [[0, float(value(state))]],
            "run_s": [0.0, 0.0],  # cpu, wall
            "first_nonfinite_generation": None,
        }
    for chunk in range(case["generations"] // case["record_every"]):
        first = jnp.asarray(chunk * case["record_every"], jnp.int32)
        for library, (_, advance) in runners.items():
            result = results[library]
            clock = Clock()
            states[library], bad = jax.block_until_ready(advance(states[library], key, first))
            result["run_s"] = [a + b for a, b in zip(result["run_s"], clock.read(), strict=True)]
            if int(bad) >= 0 and result["first_nonfinite_generation"] is None:
                result["first_nonfinite_generation"] = int(bad)
            result["curve"].append(
                [(chunk + 1) * case["record_every"], float(value(states[library]))]
            )
    for result in results.values():
        done = max(result["curve"][-1][0], 1)
        result["ms_per_generation"] = 1e3 * result["run_s"][0] / done
        result["wall_ms_per_generation"] = 1e3 * result["run_s"][1] / done
        result["final"] = result["curve"][-1][1]
        result["nonfinite"] = result["first_nonfinite_generation"] is not None or not all(
            math.isfinite(v) for _, v in result["curve"]
        )
    return {**case, "libraries": results}


def large_cases(args):
    return [
        {"kind": "large", "strategy": name, "d": args.large_d, "generations":
         args.large_generations, "record_every": args.record_every, "seed": 0,
         "libraries": [lib for lib in LIBRARIES if lib in args.sides]}
        for name in args.large_strategies
    ]  # fmt: skip


# --------------------------------------------------------------------------------------
# Running cases.
# --------------------------------------------------------------------------------------


def run_case(case):
    return speed_case(case) if case["kind"] == "speed" else large_case(case)


def measure(case, args):
    """``run_case(case)`` here (``--quick``) or in a fresh process."""
    if args.quick:
        return run_case(case)
    command = [sys.executable, __file__, "--worker", json.dumps(case)]
    return _bench.run_for_result(command, args.timeout, extra_env=THREAD_ENV)


def describe(case):
    if case["kind"] == "speed":
        precision = "float64" if case["x64"] else "float32"
        return f"[speed] d={case['d']:<5} {precision} sides {', '.join(case['sides'])}"
    return f"[large] {case['strategy']} d={case['d']:,} {case['generations']:,} generations"


def run_all(args, argv):
    start = time.perf_counter()
    log(f"[setup] {_bench.package_versions(VERSIONS_OF)}; {THREAD_ENV}")
    results = {"speed": [], "large": []}
    cases = ([] if args.skip_speed else speed_cases(args)) + (
        [] if args.skip_large else large_cases(args)
    )
    for case in cases:
        log(describe(case) + " ...")
        case_start = time.perf_counter()
        result = measure(case, args)
        if "error" in result:
            result = {**case, "error": result["error"]}
            log(f"  error: {result['error']}")
        log(f"  {time.perf_counter() - case_start:.0f} s; {summary(result)}")
        results[case["kind"]].append(result)
    meta = {
        "argv": argv,
        "elapsed_s": time.perf_counter() - start,
        "machine": _bench.machine_description(),
        "python": platform.python_version(),
        "versions": _bench.package_versions(VERSIONS_OF),
        "library": _bench.library_version(),
        "load_average": _bench.load_average(),
        "thread_env": THREAD_ENV,
        "date": _bench.today(),
    }
    return {"meta": meta, **results}


def summary(result):
    if "error" in result:
        return "failed"
    if result["kind"] == "speed":
        return ", ".join(
            f"{side} {values['us_per_generation']:,.0f} us/gen (setup {values['compile_s']:.1f} s)"
            for side, values in result["sides"].items()
        )
    return ", ".join(
        f"{library} f={values['final']:.3g} {values['ms_per_generation']:.1f} ms/gen"
        for library, values in result["libraries"].items()
    )


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def fmt_us(value):
    if value is None or not math.isfinite(value) or value <= 0:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def ratio(slow, fast):
    """``slow / fast`` per generation, ``None`` unless both are measured and positive."""
    if slow is None or fast is None or slow <= 0 or fast <= 0:
        return None
    return slow / fast


def us(row, side, key="us_per_generation"):
    """A side's CPU (or, with ``key="wall_us_per_generation"``, wall) time per generation."""
    values = row.get("sides", {}).get(side)
    return values[key] if values else None


def speed_table(rows):
    """Float32 rows: every side's time and ours against pycma and evosax."""
    lines = [
        "| d | population | " + " | ".join(SIDE_LABELS[s] for s in SIDES) + " "
        "| pycma / ours | evosax / ours | target |",
        "|---:|---:|" + "---:|" * len(SIDES) + "---:|---:|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['d']:,} | | failed: {row['error'][:80]} |")
            continue
        ours = us(row, "ours")
        vs_pycma, vs_evosax = ratio(us(row, "pycma"), ours), ratio(us(row, "evosax"), ours)
        cells = [fmt_us(us(row, side)) for side in SIDES]
        lines.append(
            f"| {row['d']:,} | {row['population_size']} | " + " | ".join(cells) + " | "
            f"{fmt_ratio(vs_pycma)} | {fmt_ratio(vs_evosax)} | {target_verdict(row)} |"
        )
    return "\n".join(lines)


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def target_verdict(row):
    """The row's targets: >= PYCMA_TARGET x pycma's speed, >= evosax's, where they apply."""
    ours, parts = us(row, "ours"), []
    if row["d"] in PYCMA_TARGET_DIMS:
        measured = ratio(us(row, "pycma"), ours)
        met = measured is not None and measured >= PYCMA_TARGET
        parts.append(f"{PYCMA_TARGET:g}x pycma: {'met' if met else 'not met'}")
    if row["d"] in EVOSAX_TARGET_DIMS:
        measured = ratio(us(row, "evosax"), ours)
        met = measured is not None and measured >= 1
        parts.append(f"evosax: {'met' if met else 'not met'}")
    return "; ".join(parts) or "-"


def x64_table(rows):
    sides = [s for s in SIDES if s != "evosax"]
    lines = [
        "| d | population | " + " | ".join(SIDE_LABELS[s] for s in sides) + " | pycma / ours |",
        "|---:|---:|" + "---:|" * len(sides) + "---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['d']:,} | | failed: {row['error'][:80]} |")
            continue
        vs_pycma = ratio(us(row, "pycma"), us(row, "ours"))
        cells = [fmt_us(us(row, side)) for side in sides]
        lines.append(
            f"| {row['d']:,} | {row['population_size']} | " + " | ".join(cells) + " | "
            f"{fmt_ratio(vs_pycma)} |"
        )
    return "\n".join(lines)


def lengths_text(rows):
    return ", ".join(
        f"{row['short']} and {row['long']} generations ({row['repeats']} repeats, "
        f"block {row['block_size']}) at d = {row['d']:,}"
        for row in rows
        if "error" not in row
    )


def large_table(rows):
    lines = [
        "| strategy | library | f(x0) | f after {n} generations | NaN / inf | ms / gen "
        "| compile s |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    generations = None
    for row in rows:
        label = LARGE_LABELS[row["strategy"]]
        if "error" in row:
            lines.append(f"| {label} | | failed: {row['error'][:80]} | | | | |")
            continue
        generations = row["generations"]
        for library, values in row["libraries"].items():
            name = "ours" if library == "ours" else f"evosax `{LARGE_STRATEGIES[row['strategy']]}`"
            bad = values["first_nonfinite_generation"]
            nonfinite = (
                f"yes, from generation {bad:,}"
                if bad is not None
                else ("yes (mean)" if values["nonfinite"] else "no")
            )
            lines.append(
                f"| {label} | {name} | {values['curve'][0][1]:.3g} | {values['final']:.3g} | "
                f"{nonfinite} | {values['ms_per_generation']:.1f} | {values['compile_s']:.1f} |"
            )
    lines[0] = lines[0].replace("{n}", f"{generations:,}" if generations else "N")
    return "\n".join(lines)


def plot_large(rows, path):
    """f at the mean against generations, log scale: one color per strategy, one line
    style per library."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    colors = {"lm_ma_es": "tab:blue", "sep_cma_es": "tab:orange"}
    styles = {"ours": "-", "evosax": "--"}
    d = None
    for row in rows:
        if "error" in row:
            continue
        d = row["d"]
        for library, values in row["libraries"].items():
            generations = [g for g, _ in values["curve"]]
            f_values = [v if math.isfinite(v) else float("nan") for _, v in values["curve"]]
            name = "ours" if library == "ours" else "evosax"
            axes.plot(
                generations,
                f_values,
                styles[library],
                color=colors[row["strategy"]],
                label=f"{LARGE_LABELS[row['strategy']]}, {name}",
            )
    axes.set_yscale("log")
    axes.set_xlabel("generation")
    lam = population_size(d)
    top = axes.secondary_xaxis("top", functions=(lambda g: g * lam, lambda e: e / lam))
    top.set_xlabel(f"evaluations (population {lam})")
    axes.set_ylabel("f at the mean")
    axes.set_title(f"Rotated ellipsoid, d = {d:,}, condition {CONDITION:.0e}, float32")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_speed(rows, path):
    """Microseconds of CPU time per generation of every side at each d of ``rows`` (the
    measured float32 rows), log scale."""
    plt = _plots.pyplot()
    series = [
        (SIDE_LABELS[side].replace("`", ""), SIDE_COLORS[side], [us(row, side) for row in rows])
        for side in SIDES
        if any(us(row, side) for row in rows)
    ]
    groups = [f"d = {row['d']:,}\npopulation {row['population_size']}" for row in rows]
    figure, axes = plt.subplots(figsize=(8, 4.2))
    _plots.grouped_bars(axes, groups, series)
    _plots.plain_log_scale(axes)
    axes.set_ylabel("µs of CPU time per generation")
    axes.set_title("CMA-ES on one thread, time per generation (lower is better)")
    axes.legend(loc="upper left")
    _plots.save(figure, path)


def target_lines(speed_rows):
    """One line per target, from the float32 rows."""
    by_d = {row["d"]: row for row in speed_rows if "error" not in row}

    def line(dims, side, threshold):
        parts = []
        for d in dims:
            row = by_d.get(d)
            measured = ratio(us(row, side), us(row, "ours")) if row else None
            if measured is None:
                parts.append(f"d = {d:,}: not measured")
                continue
            wall = "wall_us_per_generation"
            wall_ratio = fmt_ratio(ratio(us(row, side, wall), us(row, "ours", wall)))
            verdict = "met" if measured >= threshold else "not met"
            parts.append(f"d = {d:,}: {measured:.2f}x ({verdict}; wall time {wall_ratio})")
        return "; ".join(parts)

    return (
        f"- Ours at least {PYCMA_TARGET:g}x faster than pycma: "
        f"{line(PYCMA_TARGET_DIMS, 'pycma', PYCMA_TARGET)}.\n"
        f"- Ours at least as fast as evosax: {line(EVOSAX_TARGET_DIMS, 'evosax', 1.0)}."
    )


def render(saved, image_link):
    text = _bench.prose("cma")
    meta = saved["meta"]
    speed32 = [row for row in saved["speed"] if not row["x64"]]
    speed64 = [row for row in saved["speed"] if row["x64"]]
    parts = [
        SECTION_TITLE,
        _bench.fill(
            text["header"],
            machine=meta["machine"],
            python=meta["python"],
            versions=meta["versions"],
            library=meta["library"],
            load=meta["load_average"],
            openblas=meta["thread_env"]["OPENBLAS_NUM_THREADS"],
            xla_flags=meta["thread_env"]["XLA_FLAGS"],
            date=meta["date"],
            minutes=f"{meta['elapsed_s'] / 60:.1f}",
            install=INSTALL_COMMAND,
            command=_bench.reproduce_command(
                RUN_COMMAND, meta["argv"], output_flags=("--no-docs",)
            ),
        ),
    ]
    if speed32:
        parts.append(
            _bench.fill(
                text["speed"],
                condition=f"{CONDITION:.0e}",
                sigma0=SIGMA0,
                lengths=lengths_text(speed32),
                table=speed_table(speed32),
                targets=target_lines(speed32),
            )
        )
    if speed64:
        parts.append(
            _bench.fill(
                text["speed_double"], lengths=lengths_text(speed64), table=x64_table(speed64)
            )
        )
    large = saved["large"]
    if large:
        first = large[0]
        parts.append(
            _bench.fill(
                text["large"],
                d=f"{first['d']:,}",
                block=ROTATION_BLOCK,
                condition=f"{CONDITION:.0e}",
                seed=ROTATION_SEED,
                population=population_size(first["d"]),
                generations=f"{first['generations']:,}",
                record_every=first["record_every"],
                table=large_table(large),
                image=image_link or "(no picture in this run)",
            )
        )
    return "\n\n".join(parts) + "\n"


def report(saved, args):
    image_link = None
    if args.output and any("error" not in row for row in saved["large"]):
        plot_large(saved["large"], IMAGE)
        relative = os.path.relpath(IMAGE, args.output.resolve().parent)
        image_link = f"![f at the mean against generations]({relative})"
    measured32 = [row for row in saved["speed"] if "error" not in row and not row["x64"]]
    if args.output and measured32:
        plot_speed(measured32, _plots.image_path(args.output, SPEED_IMAGE))
    section = render(saved, image_link)
    print()
    print(section)
    if args.output:
        _bench.write_section(args.output, SECTION_TITLE, section)
        log(f"[done] wrote {args.output}")


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help="internal: run one case given as JSON, print it")
    parser.add_argument("--quick", action="store_true", help="seconds, in-process, no files")
    parser.add_argument("--sides", nargs="+", choices=SIDES, help="default: all importable")
    parser.add_argument("--dims", type=int, nargs="+", help="float32 speed dimensions")
    parser.add_argument("--x64-dims", type=int, nargs="*", help="float64 speed dimensions")
    parser.add_argument("--repeats", type=int, help="timed repeats per side and length")
    parser.add_argument("--large-d", type=int)
    parser.add_argument("--large-generations", type=int)
    parser.add_argument("--record-every", type=int, help="generations between f records")
    parser.add_argument(
        "--large-strategies", nargs="+", choices=LARGE_STRATEGIES, default=list(LARGE_STRATEGIES)
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    _bench.add_output_options(parser)
    parser.add_argument("--no-docs", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.sides is None:
        importable = {"evosax": available("evosax"), "pycma": available("cma")}
        args.sides = [side for side in SIDES if importable.get(side, True)]
    args.dims = args.dims or ([10] if quick else list(SPEED_DIMS))
    args.x64_dims = args.x64_dims if args.x64_dims is not None else (
        [10] if quick else list(X64_DIMS)
    )  # fmt: skip
    args.large_d = args.large_d or (400 if quick else 10_000)
    args.large_generations = args.large_generations or (20 if quick else 10_000)
    args.record_every = args.record_every or (10 if quick else 100)
    if args.large_generations % args.record_every:
        parser.error("--large-generations must be a multiple of --record-every")
    if not (quick or args.no_docs or args.worker or args.from_json):
        args.output = args.output or _bench.BENCHMARKS_DOC
        args.json = args.json or DEFAULT_JSON
    return args


def missing_message(sides):
    return (
        f"{', '.join(sides)} not installed here; the benchmark venv has them:\n\n"
        f"    {INSTALL_COMMAND}\n    {RUN_COMMAND}\n"
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        _bench.print_result(run_case(json.loads(args.worker)))
        return
    if args.from_json:
        report(json.loads(args.from_json.read_text()), args)
        return
    missing = [side for side in ("evosax", "pycma") if side not in args.sides]
    if missing and not args.quick:
        sys.stderr.write("warning: " + missing_message(missing))
    saved = run_all(args, argv)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(saved, indent=1))
    report(saved, args)


if __name__ == "__main__":
    main()
