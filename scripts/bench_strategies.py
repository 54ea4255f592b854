"""Benchmark of es_toolkit's strategies against evosax's implementations of the same algorithms.

For each strategy (OpenAI-ES, PGPE, SNES, ARS), objective (sphere, Rosenbrock, Rastrigin)
and dimension (d = 100 and d = 10,000), population 256, both libraries run the same
algorithm with the same hyperparameters from the same start, side by side in one process:

* speed: generations per second of the whole loop, jitted as one ``lax.scan`` over the
  generations, timed after compilation, median over the runs;
* quality: the median over 5 seeds of the objective at the final mean.

A second part measures the peak resident memory (``ru_maxrss``) of population 10,000 at
d = 100,000, each configuration in its own subprocess: ours chunked
(``strategy(..., chunk_size=C)`` and ``evaluate(..., chunk_size=C)``), evosax as it is
(it holds the whole population). evosax runs only when XLA's own estimate of its buffers
fits comfortably in the memory available; otherwise it is reported as not fitting, with
that estimate, and a smaller calibration size checks the estimate against a measurement.

evosax is a benchmark-only tool, not a dependency of es_toolkit. Install it in a separate
virtual environment (the dev venv keeps its jax)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -e . "jax==0.10.2" "jaxlib==0.10.2" "evosax==0.3.2"

Usage::

    OPENBLAS_NUM_THREADS=1 .venv-bench/bin/python scripts/bench_strategies.py          # full
    OPENBLAS_NUM_THREADS=1 .venv-bench/bin/python scripts/bench_strategies.py --quick  # smoke
"""

import os

# Single-threaded BLAS, as the comparison asks; set before numpy/jax load OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
import platform
import re
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path

import _bench

SECTION_TITLE = "## ES strategies against evosax"
INSTALL_COMMAND = (
    'python3 -m venv .venv-bench && .venv-bench/bin/pip install -e . "jax==0.10.2" '
    '"jaxlib==0.10.2" "evosax==0.3.2"'
)
RUN_COMMAND = "OPENBLAS_NUM_THREADS=1 .venv-bench/bin/python scripts/bench_strategies.py"
VERSIONS_OF = ("jax", "jaxlib", "optax", "evosax", "flax", "numpy")
STRATEGIES = ("open_es", "pgpe", "snes", "ars")
LABELS = {"open_es": "OpenAI-ES", "pgpe": "PGPE", "snes": "SNES", "ars": "ARS"}
OBJECTIVES = ("sphere", "rosenbrock", "rastrigin")
# Final values below SOLVED * f(x0) count as the optimum: every coordinate is then within
# about 1e-6 of the start's scale from it, the float32 resolution of x.
SOLVED = 1e-12
WARMUP_MAX_D = 1000  # above it a run lasts seconds and a warm-up call would only cost time
X0_KEY = 1234  # x0 = objective.init(jax.random.key(X0_KEY), d): uniform in its bounds

# Hyperparameters, identical on both sides, per (strategy, objective, d): the best median
# final value on evosax over a small grid (3 to 9 candidates; seeds 100..102 at d = 100 with
# 1,000 generations, 100..101 at d = 10,000 with 100), seeds disjoint from the benchmark's.
#   open_es: sigma, Adam learning rate          pgpe: sigma, ClipUp learning rate
#   snes: sigma (other rates: defaults)    ars: sigma, SGD learning rate
HYPERPARAMETERS = {
    ("open_es", "sphere", 100): {"sigma": 0.3, "lr": 0.01},
    ("open_es", "rosenbrock", 100): {"sigma": 0.03, "lr": 0.05},
    ("open_es", "rastrigin", 100): {"sigma": 0.3, "lr": 0.2},
    ("open_es", "sphere", 10_000): {"sigma": 1.0, "lr": 0.2},
    ("open_es", "rosenbrock", 10_000): {"sigma": 1.0, "lr": 0.2},
    ("open_es", "rastrigin", 10_000): {"sigma": 0.1, "lr": 0.05},
    ("pgpe", "sphere", 100): {"sigma": 1.5, "lr": 0.05},
    ("pgpe", "rosenbrock", 100): {"sigma": 0.1, "lr": 0.05},
    ("pgpe", "rastrigin", 100): {"sigma": 0.5, "lr": 0.05},
    ("pgpe", "sphere", 10_000): {"sigma": 0.5, "lr": 1.5},
    ("pgpe", "rosenbrock", 10_000): {"sigma": 0.1, "lr": 1.5},
    ("pgpe", "rastrigin", 10_000): {"sigma": 0.1, "lr": 0.5},
    ("snes", "sphere", 100): {"sigma": 0.3},
    ("snes", "rosenbrock", 100): {"sigma": 1.0},
    ("snes", "rastrigin", 100): {"sigma": 1.0},
    ("snes", "sphere", 10_000): {"sigma": 1.0},
    ("snes", "rosenbrock", 10_000): {"sigma": 3.0},
    ("snes", "rastrigin", 10_000): {"sigma": 3.0},
    ("ars", "sphere", 100): {"sigma": 0.1, "lr": 0.05},
    ("ars", "rosenbrock", 100): {"sigma": 0.1, "lr": 0.05},
    ("ars", "rastrigin", 100): {"sigma": 1.0, "lr": 0.05},
    ("ars", "sphere", 10_000): {"sigma": 0.1, "lr": 1.0},
    ("ars", "rosenbrock", 10_000): {"sigma": 0.1, "lr": 1.0},
    ("ars", "rastrigin", 10_000): {"sigma": 0.1, "lr": 0.05},
}
PGPE_SIGMA_LR = 0.1  # both libraries' default
PGPE_MAX_SIGMA_CHANGE = 0.2  # both libraries' default
CLIPUP_MOMENTUM = 0.9  # both libraries' default; max speed 2 * lr on both sides


def missing_evosax_message():
    return (
        "evosax is not installed in this environment. It is a benchmark-only tool, kept out\n"
        "of es_toolkit's dependencies; install it in a separate venv (the dev venv keeps its\n"
        "jax) from the repository root:\n\n"
        f"    {INSTALL_COMMAND}\n\n"
        f"then run:\n\n    {RUN_COMMAND}\n"
    )


def require_evosax():
    try:
        import evosax  # noqa: F401
    except ImportError:
        sys.stderr.write(missing_evosax_message())
        sys.exit(2)


def log(message):
    print(message, flush=True)


# --------------------------------------------------------------------------------------
# The two sides of one comparison.
# --------------------------------------------------------------------------------------


def hyperparameters(strategy, objective, d):
    """The row's hyperparameters; sizes not in the table take those of the nearest d."""
    known = sorted({key[2] for key in HYPERPARAMETERS})
    nearest = min(known, key=lambda k: abs(k - d))
    return HYPERPARAMETERS[(strategy, objective, nearest)]


def build_pair(strategy, population_size, x0, hp, chunk_size=None):
    """(our EvolutionStrategy, evosax algorithm, evosax params) with the same settings."""
    import jax.numpy as jnp
    import optax
    from evosax.algorithms import ARS, PGPE, SNES, Open_ES
    from evosax.core.fitness_shaping import (
        centered_rank_fitness_shaping_fn,
        identity_fitness_shaping_fn,
        weights_fitness_shaping_fn,
    )
    from evosax.core.optimizer import clipup as evosax_clipup

    from es_toolkit import strategies

    n = population_size
    if strategy == "open_es":
        ours = strategies.open_es(
            n,
            sigma=hp["sigma"],
            optimizer=optax.adam(hp["lr"]),
            fitness_shaping="centered_ranks",
            antithetic=True,
            chunk_size=chunk_size,
        )
        theirs = Open_ES(
            n,
            x0,
            use_antithetic_sampling=True,
            optimizer=optax.adam(hp["lr"]),
            std_schedule=optax.constant_schedule(hp["sigma"]),
            fitness_shaping_fn=centered_rank_fitness_shaping_fn,
        )
        return ours, theirs, theirs.default_params
    if strategy == "pgpe":
        # ClipUp on both sides: ours v = clip(m v + lr g/|g|, 2 lr); evosax's scales the
        # same recursion by 1/lr and multiplies back, the same steps (up to its eps=1e-8).
        ours = strategies.pgpe(
            n,
            sigma=hp["sigma"],
            learning_rate=hp["lr"],
            sigma_learning_rate=PGPE_SIGMA_LR,
            max_sigma_change=PGPE_MAX_SIGMA_CHANGE,
            fitness_shaping="centered_ranks",
            chunk_size=chunk_size,
        )
        theirs = PGPE(
            n,
            x0,
            optimizer=evosax_clipup(
                learning_rate=hp["lr"], max_velocity=2 * hp["lr"], momentum=CLIPUP_MOMENTUM
            ),
            fitness_shaping_fn=centered_rank_fitness_shaping_fn,
        )
        params = theirs.default_params.replace(
            std_init=hp["sigma"], std_lr=PGPE_SIGMA_LR, std_max_change=PGPE_MAX_SIGMA_CHANGE
        )
        return ours, theirs, params
    if strategy == "snes":
        # Both: NES rank utilities, mean step 1, sigma rate (3 + log d) / (5 sqrt d).
        ours = strategies.snes(
            n,
            sigma=hp["sigma"],
            learning_rate=1.0,
            fitness_shaping="nes_utilities",
            chunk_size=chunk_size,
        )
        theirs = SNES(
            n, x0, optimizer=optax.sgd(1.0), fitness_shaping_fn=weights_fitness_shaping_fn
        )
        params = theirs.default_params.replace(std_init=jnp.asarray(hp["sigma"], jnp.float32))
        return ours, theirs, params
    if strategy == "ars":
        theirs = ARS(
            n,
            x0,
            optimizer=optax.sgd(hp["lr"]),
            std_schedule=optax.constant_schedule(hp["sigma"]),
            fitness_shaping_fn=identity_fitness_shaping_fn,
        )
        # evosax keeps a fixed half of the directions (elite_ratio 0.5): the same top-b.
        ours = strategies.ars(
            n,
            sigma=hp["sigma"],
            learning_rate=hp["lr"],
            top_directions=theirs.num_elites,
            chunk_size=chunk_size,
        )
        return ours, theirs, theirs.default_params
    raise ValueError(f"unknown strategy {strategy!r}")


def ours_run(strategy, f, num_generations, chunk_size=None, layout="minimize"):
    """``run(key, x0) -> f(final mean)``: ``num_generations`` generations of ours.

    Each generation is ``evaluate_and_tell`` (what ``minimize`` runs: the noise drawn once
    for members and update when the population is held at once) with generation ``g``
    keyed by ``fold_in(key, g)``; fitness = -f (our strategies maximize).

    ``layout="minimize"``: the generations run as in ``minimize``, a ``lax.scan`` whose
    step is ``lax.cond(done, skip, generation, carry)`` with the generation count and a
    done flag in the carry (``minimize``'s best-point tracking, progress and callbacks
    left out; the metrics unused, so XLA drops them). ``layout="plain"``: the generation
    is the scan body itself, the loop a user writes. ``layout="ask_tell"``: a plain scan
    of the public contract, ``ask``, vmapped f, ``tell`` regenerating the noise from the
    key (the profile's reference for what drawing once saves).
    """
    import jax
    import jax.numpy as jnp

    from es_toolkit.strategies.base import evaluate, evaluate_and_tell

    def fitness_fn(x):
        return -f(x)

    def generation(key, state, count):
        gen_key = jax.random.fold_in(key, count)
        return evaluate_and_tell(strategy, gen_key, state, fitness_fn, chunk_size)[0]

    def ask_tell(key, state, count):
        gen_key = jax.random.fold_in(key, count)
        fitness = evaluate(strategy, gen_key, state, fitness_fn, chunk_size)
        return strategy.tell(gen_key, state, fitness)[0]

    def run_minimize_layout(key, x0):
        def step(carry, _):
            state, count, done = carry
            state = jax.lax.cond(done, lambda s: s, lambda s: generation(key, s, count), state)
            return (state, count + 1, done | (count + 1 >= num_generations)), None

        carry = (strategy.init(x0), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
        (state, _, _), _ = jax.lax.scan(step, carry, length=num_generations)
        return f(state.mean)

    def plain(body):
        def run(key, x0):
            def step(state, count):
                return body(key, state, count), None

            state, _ = jax.lax.scan(step, strategy.init(x0), jnp.arange(num_generations))
            return f(state.mean)

        return run

    runs = {
        "minimize": run_minimize_layout,
        "plain": plain(generation),
        "ask_tell": plain(ask_tell),
    }
    if layout not in runs:
        raise ValueError(f"unknown layout {layout!r}")
    return runs[layout]


def evosax_run(algorithm, params, f, num_generations):
    """``run(key, x0) -> f(final mean)`` with evosax's ask, evaluate, tell (it minimizes)."""
    import jax
    import jax.numpy as jnp

    def run(key, x0):
        def step(state, generation):
            ask_key, tell_key = jax.random.split(jax.random.fold_in(key, generation))
            population, state = algorithm.ask(ask_key, state, params)
            fitness = jax.vmap(f)(population)
            state, _ = algorithm.tell(tell_key, population, fitness, state, params)
            return state, None

        state = algorithm.init(key, x0, params)
        state, _ = jax.lax.scan(step, state, jnp.arange(num_generations))
        return f(algorithm.get_mean(state))

    return run


# --------------------------------------------------------------------------------------
# Speed and quality table.
# --------------------------------------------------------------------------------------


def compile_run(run, x0):
    import jax

    start = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.key(0), x0).compile()
    return compiled, time.perf_counter() - start


def timed_call(compiled, seed, x0):
    import jax

    key = jax.random.key(seed)
    start = time.perf_counter()
    value = compiled(key, x0).block_until_ready()
    return time.perf_counter() - start, float(value)


def compare_row(strategy, objective_name, d, population_size, num_generations, seeds, rounds):
    """Runs both sides on every seed (alternating which goes first) and summarizes."""
    import jax

    from es_toolkit import objectives

    objective = objectives.get(objective_name)
    x0 = objective.init(jax.random.key(X0_KEY), d)
    hp = hyperparameters(strategy, objective_name, d)
    ours, theirs, params = build_pair(strategy, population_size, x0, hp)
    plain = ours_run(ours, objective.fn, num_generations, layout="plain")
    sides = {
        "ours": compile_run(ours_run(ours, objective.fn, num_generations), x0),
        "ours_plain": compile_run(plain, x0),
        "evosax": compile_run(evosax_run(theirs, params, objective.fn, num_generations), x0),
    }
    if d <= WARMUP_MAX_D:  # an untimed first execution where runs are short
        for compiled, _ in sides.values():
            compiled(jax.random.key(seeds[0]), x0).block_until_ready()
    times = {side: [] for side in sides}
    finals = {side: {} for side in sides}
    for round_index in range(rounds):
        for i, seed in enumerate(seeds):
            names = list(sides)
            shift = (i + round_index) % len(names)  # each side leads in turn
            for side in names[shift:] + names[:shift]:
                seconds, value = timed_call(sides[side][0], seed, x0)
                times[side].append(seconds)
                finals[side][seed] = value
    row = {
        "strategy": strategy,
        "objective": objective_name,
        "d": d,
        "population_size": population_size,
        "num_generations": num_generations,
        "hyperparameters": hp,
        "f_x0": float(objective.fn(x0)),
    }
    for side in sides:
        row[side] = {
            "compile_s": sides[side][1],
            "times_s": times[side],
            "gen_per_s": num_generations / statistics.median(times[side]),
            "finals": [finals[side][seed] for seed in seeds],
            "median_final": statistics.median(finals[side][seed] for seed in seeds),
        }
    row["speed_ratio"] = row["ours"]["gen_per_s"] / row["evosax"]["gen_per_s"]
    row["speed_ratio_plain"] = row["ours_plain"]["gen_per_s"] / row["evosax"]["gen_per_s"]
    judge(row)
    return row


def judge(row):
    """Targets: at least evosax's speed in both of our layouts, final values as good."""
    row["speed_met"] = min(row["speed_ratio"], row["speed_ratio_plain"]) >= 1.0
    row["quality_met"] = all(
        quality_met(row[side]["finals"], row["evosax"]["finals"], row["f_x0"])
        for side in ("ours", "ours_plain")
    )


def quality_met(ours, theirs, f_x0):
    """As good or better, within seed noise: our median is at most evosax's median plus
    the larger of the two seed spreads (max - min over the seeds). A median below
    ``SOLVED * f(x0)`` counts as the optimum itself (all three optima are 0)."""
    ours_median = statistics.median(ours)
    if math.isnan(ours_median):
        return False
    if ours_median <= SOLVED * abs(f_x0):
        return True
    noise = max(max(ours) - min(ours), max(theirs) - min(theirs))
    return ours_median <= statistics.median(theirs) + noise


# --------------------------------------------------------------------------------------
# Memory: each configuration in its own subprocess.
# --------------------------------------------------------------------------------------


def memory_child(config):
    """Runs one memory configuration in this process and returns its measurements."""
    import jax

    from es_toolkit import objectives

    objective = objectives.get(config["objective"])
    d, n, side = config["d"], config["population_size"], config["side"]
    chunk_size = config.get("chunk_size")
    x0 = objective.init(jax.random.key(X0_KEY), d)
    hp = hyperparameters(config["strategy"], config["objective"], d)
    ours, theirs, params = build_pair(config["strategy"], n, x0, hp, chunk_size=chunk_size)
    if side == "ours":
        run = ours_run(ours, objective.fn, config["num_generations"], chunk_size)
    else:
        run = evosax_run(theirs, params, objective.fn, config["num_generations"])
    compiled, compile_s = compile_run(run, x0)
    analysis = compiled.memory_analysis()
    estimate = (
        analysis.temp_size_in_bytes
        + analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.generated_code_size_in_bytes
    )
    result = {
        **config,
        "compile_s": compile_s,
        "xla_bytes": estimate,
        "rss_before_run_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if config["max_bytes"] is not None and estimate > config["max_bytes"]:
        return {**result, "ran": False}
    start = time.perf_counter()
    value = compiled(jax.random.key(0), x0).block_until_ready()
    seconds = time.perf_counter() - start
    return {
        **result,
        "ran": True,
        "seconds_per_generation": seconds / config["num_generations"],
        "final": float(value),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def available_bytes():
    """MemAvailable from /proc/meminfo (0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_memory_config(config, timeout):
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", json.dumps(config)]
    result = _bench.run_for_result(command, timeout)
    return {**config, "ran": False, **result} if "error" in result else result


def memory_rows(args):
    rows = []
    sizes = [(args.memory_population, args.memory_d, True)]
    if args.calibration_d:
        sizes.append((args.memory_population, args.calibration_d, False))
    for population_size, d, main_size in sizes:
        for strategy in args.memory_strategies:
            for side in ("ours", "evosax"):
                budget = args.evosax_memory_fraction * available_bytes()
                config = {
                    "strategy": strategy,
                    "objective": args.memory_objective,
                    "side": side,
                    "population_size": population_size,
                    "d": d,
                    "num_generations": args.memory_generations,
                    "chunk_size": args.chunk_size if side == "ours" else None,
                    # ours must run whatever the estimate says (the 2 GB target is checked
                    # on the measurement); evosax only where it cannot exhaust the machine.
                    "max_bytes": None if side == "ours" else budget,
                    "main_size": main_size,
                }
                log(f"[memory] {side:6s} {LABELS[strategy]:9s} pop {population_size:,} d {d:,} ...")
                result = run_memory_config(config, args.timeout)
                log(f"[memory]   -> {describe_memory(result)}")
                rows.append(result)
    return rows


def describe_memory(result):
    if result.get("error"):
        return f"failed: {result['error']}"
    estimate = f"XLA estimate {result['xla_bytes'] / 1e9:.2f} GB"
    if not result["ran"]:
        return f"not run ({estimate} > budget {result['max_bytes'] / 1e9:.1f} GB)"
    return (
        f"peak RSS {result['peak_rss_mb']:.0f} MB, {estimate}, "
        f"{result['seconds_per_generation']:.2f} s/generation"
    )


# --------------------------------------------------------------------------------------
# Where the time goes: OpenAI-ES on the sphere, ours (three ways) vs evosax.
# --------------------------------------------------------------------------------------

PROFILE_VARIANTS = {
    "evosax": "evosax `Open_ES`: ask, evaluate, tell",
    "ours": "ours as in the table, `minimize`'s layout (`evaluate_and_tell`: noise drawn once)",
    "ours_plain": "ours as in the table, plain `lax.scan` body (`evaluate_and_tell`)",
    "ours_ask_tell": "ours through the public contract: `ask`, evaluate, `tell` regenerating "
    "the noise from the key, plain scan",
    "noise": "noise only: one draw of the population, es_toolkit's per-member keys",
    "noise_one_call": "noise only: one draw with one `normal(key, (n/2, d))` call",
}


def profile_runs(d, population_size, num_generations):
    """``{variant: run(key, x0)}`` for the cost breakdown, all on the sphere."""
    import jax
    import jax.numpy as jnp

    from es_toolkit import objectives
    from es_toolkit import sampling as sampling_lib
    from es_toolkit.noise import Normal

    f = objectives.sphere
    n, half = population_size, population_size // 2
    x0 = objectives.get("sphere").init(jax.random.key(X0_KEY), d)
    hp = hyperparameters("open_es", "sphere", d)
    ours, theirs, params = build_pair("open_es", n, x0, hp)
    sampling = sampling_lib.make_sampling(n, Normal(), antithetic=True)
    generations = jnp.arange(num_generations)

    def draw_per_member(key, like):  # what ask and tell do: fold_in(key, j) per direction
        return sampling_lib.sample_directions(sampling, key, 0, half, like)

    def draw_one_call(key, like):  # what evosax does
        return jax.random.normal(key, (half, like.shape[0]), like.dtype)

    def noise_only(draw):
        def run(key, x):
            def step(total, generation):
                z = draw(jax.random.fold_in(key, generation), x)
                return total + jnp.sum(z, axis=0), None

            return jnp.sum(jax.lax.scan(step, jnp.zeros_like(x), generations)[0])

        return run

    runs = {
        "evosax": evosax_run(theirs, params, f, num_generations),
        "ours": ours_run(ours, f, num_generations),
        "ours_plain": ours_run(ours, f, num_generations, layout="plain"),
        "ours_ask_tell": ours_run(ours, f, num_generations, layout="ask_tell"),
        "noise": noise_only(draw_per_member),
        "noise_one_call": noise_only(draw_one_call),
    }
    return runs, x0


def count_loops(compiled):
    """While loops in a compiled program, less the generation loop itself: on CPU each
    threefry hash (a key fold, a split or a bulk draw) is one 5-round while loop."""
    return len(re.findall(r"\bwhile\(", compiled.as_text())) - 1


def median_times(compiled, x0, repeats):
    """Median seconds per run of each compiled program, interleaved, after one warm-up."""
    import jax

    for program in compiled.values():
        program(jax.random.key(0), x0).block_until_ready()
    times = {name: [] for name in compiled}
    for repeat in range(repeats):
        for name, program in compiled.items():
            times[name].append(timed_call(program, repeat, x0)[0])
    return {name: statistics.median(ts) for name, ts in times.items()}


def profile_rows(args):
    results = []
    for d, generations in zip(args.dims, args.profile_generations, strict=True):
        log(f"[profile] OpenAI-ES sphere d={d:,} pop={args.population_size}, {generations} gens")
        runs, x0 = profile_runs(d, args.population_size, generations)
        compiled = {name: compile_run(run, x0)[0] for name, run in runs.items()}
        seconds = median_times(compiled, x0, args.profile_repeats)
        row = {
            "d": d,
            "num_generations": generations,
            "us_per_generation": {name: 1e6 * s / generations for name, s in seconds.items()},
            "loops": {name: count_loops(program) for name, program in compiled.items()},
            "finals": {
                name: timed_call(compiled[name], 0, x0)[1]
                for name in ("ours", "ours_plain", "ours_ask_tell")
            },
        }
        for name, us in row["us_per_generation"].items():
            log(f"[profile]   {name:15s} {us:10.1f} us/generation, {row['loops'][name]} loops")
        results.append(row)
    return results


def minimize_recompile(args):
    """Seconds of two back-to-back ``minimize`` calls with the same strategy and f."""
    import jax

    from es_toolkit import minimize, objectives

    d, generations = args.dims[0], min(args.profile_generations[0], 100)
    objective = objectives.get("sphere")
    x0 = objective.init(jax.random.key(X0_KEY), d)
    hp = hyperparameters("open_es", "sphere", d)
    strategy, _, _ = build_pair("open_es", args.population_size, x0, hp)
    calls = []
    for seed in range(2):
        start = time.perf_counter()
        minimize(
            objective.fn,
            x0,
            strategy=strategy,
            num_generations=generations,
            block_size=generations,
            key=jax.random.key(seed),
            progress=False,
        )
        calls.append(time.perf_counter() - start)
    log(f"[minimize] two calls, {generations} generations each: {calls[0]:.2f} s, {calls[1]:.2f} s")
    return {"d": d, "num_generations": generations, "seconds": calls}


def profile_all(args):
    return {"breakdown": profile_rows(args), "minimize": minimize_recompile(args)}


def render_profile(text, args, profile):
    breakdown = profile["breakdown"]
    lines = [
        "| variant | "
        + " | ".join(f"d = {p['d']:,}: us / gen | x evosax | loops" for p in breakdown)
        + " |",
        "|---|" + "---:|---:|---:|" * len(breakdown),
    ]
    for name, label in PROFILE_VARIANTS.items():
        cells = []
        for p in breakdown:
            us = p["us_per_generation"][name]
            cells.append(
                f"{us:,.0f} | {us / p['us_per_generation']['evosax']:.2f} | {p['loops'][name]}"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    reading = []
    for p in breakdown:
        us, finals = p["us_per_generation"], p["finals"]
        reading.append(
            _bench.fill(
                text["profile_reading"],
                d=f"{p['d']:,}",
                **{name: f"{us[name]:,.0f}" for name in PROFILE_VARIANTS},
                noise_share=f"{us['noise'] / us['evosax']:.0%}",
                final=f"{finals['ours']:.6g}",
                final_plain=f"{finals['ours_plain']:.6g}",
                final_ask_tell=f"{finals['ours_ask_tell']:.6g}",
            )
        )
    parts = [
        _bench.fill(
            text["profile"],
            population_size=args.population_size,
            generations=", ".join(
                f"{p['num_generations']:,} generations at d = {p['d']:,}" for p in breakdown
            ),
            repeats=args.profile_repeats,
            table="\n".join(lines),
            reading="\n".join(reading),
        )
    ]
    call = profile.get("minimize")
    if call:
        seconds = call["num_generations"] * breakdown[0]["us_per_generation"]["ours"] / 1e6
        cache = _bench.fill(
            text["minimize_cache"],
            d=f"{call['d']:,}",
            generations=call["num_generations"],
            first=f"{call['seconds'][0]:.2f}",
            second=f"{call['seconds'][1]:.2f}",
            expected=f"{seconds:.2f}",
        )
        parts += ["", cache]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def fmt_value(value):
    if math.isnan(value):
        return "nan"
    if value == 0:
        return "0"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.2e}"


def fmt_rate(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def fmt_final(values):
    low, high = fmt_value(min(values)), fmt_value(max(values))
    return f"{fmt_value(statistics.median(values))} [{low}, {high}]"


def verdict(row):
    misses = [
        name
        for name, ok in (("speed", row["speed_met"]), ("quality", row["quality_met"]))
        if not ok
    ]
    return "yes" if not misses else f"**no** ({', '.join(misses)})"


def speed_table(rows):
    lines = [
        "| strategy | objective | d | generations | evosax gen/s | ours gen/s (`minimize` "
        "layout) | ratio | ours gen/s (plain scan) | ratio | evosax median final | ours "
        "median final | target met? |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {LABELS[r['strategy']]} | {r['objective']} | {r['d']:,} | "
            f"{r['num_generations']:,} | {fmt_rate(r['evosax']['gen_per_s'])} | "
            f"{fmt_rate(r['ours']['gen_per_s'])} | {r['speed_ratio']:.2f}x | "
            f"{fmt_rate(r['ours_plain']['gen_per_s'])} | {r['speed_ratio_plain']:.2f}x | "
            f"{fmt_final(r['evosax']['finals'])} | {fmt_final(r['ours']['finals'])} | "
            f"{verdict(r)} |"
        )
    return "\n".join(lines)


def hyperparameter_table(rows):
    seen, lines = set(), []
    lines += [
        "| strategy | objective | d | settings (both sides) |",
        "|---|---|---:|---|",
    ]
    for r in rows:
        key = (r["strategy"], r["objective"], r["d"])
        if key in seen:
            continue
        seen.add(key)
        lines.append(
            f"| {LABELS[r['strategy']]} | {r['objective']} | {r['d']:,} | "
            f"{describe_hyperparameters(r['strategy'], r['hyperparameters'])} |"
        )
    return "\n".join(lines)


def describe_hyperparameters(strategy, hp):
    if strategy == "open_es":
        return f"sigma {hp['sigma']}, `optax.adam({hp['lr']})`, centered ranks, antithetic"
    if strategy == "pgpe":
        return (
            f"sigma {hp['sigma']}, ClipUp lr {hp['lr']} (max speed {2 * hp['lr']:g}, "
            f"momentum {CLIPUP_MOMENTUM}), sigma lr {PGPE_SIGMA_LR}, max sigma change "
            f"{PGPE_MAX_SIGMA_CHANGE}, centered ranks, antithetic"
        )
    if strategy == "snes":
        return (
            f"sigma {hp['sigma']}, mean lr 1, sigma lr (3 + ln d) / (5 sqrt d), "
            "NES rank utilities, no antithetic"
        )
    return f"sigma {hp['sigma']}, SGD lr {hp['lr']}, top half of the directions, raw returns"


def memory_table(rows, main_size, target_mb):
    lines = [
        "| strategy | library | population x d | chunk | peak RSS (MB) | RSS after compile "
        "(MB) | XLA buffers (GB) | s / generation | under target? |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.get("main_size") != main_size:
            continue
        size = f"{r['population_size']:,} x {r['d']:,}"
        chunk = r["chunk_size"] or "-"
        xla = f"{r['xla_bytes'] / 1e9:.2f}" if "xla_bytes" in r else "-"
        base = f"{r['rss_before_run_mb']:.0f}" if "rss_before_run_mb" in r else "-"
        if r.get("error"):
            rss, speed, ok = f"failed ({r['error']})", "-", "**no**"
        elif not r["ran"]:
            rss = (
                f"does not fit (not run: XLA needs {r['xla_bytes'] / 1e9:.1f} GB, over "
                f"{r['max_bytes'] / 1e9:.1f} GB allowed here)"
            )
            speed, ok = "-", "**no**"
        else:
            rss = f"{r['peak_rss_mb']:.0f}"
            speed = f"{r['seconds_per_generation']:.2f}"
            ok = "yes" if r["peak_rss_mb"] < target_mb else "**no**"
        side = "ours" if r["side"] == "ours" else "evosax"
        lines.append(
            f"| {LABELS[r['strategy']]} | {side} | {size} | {chunk} | {rss} | {base} | {xla} | "
            f"{speed} | {ok} |"
        )
    return "\n".join(lines)


def spread(rows, name):
    ratios = [r[name] for r in rows]
    return (
        f"median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}x to {max(ratios):.2f}x"
    )


def run_meta(argv, elapsed):
    """Where and how a run happened, saved with its results and printed in the report."""
    return {
        "argv": argv,
        "elapsed_s": elapsed,
        "machine": _bench.machine_description(),
        "python": platform.python_version(),
        "versions": _bench.package_versions(VERSIONS_OF),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "date": _bench.today(),
    }


def render(args, rows, memory, profile, meta):
    text = _bench.prose("strategies")
    target_mb = args.memory_target_gb * 1024
    header = _bench.fill(
        text["header"],
        **meta,
        minutes=f"{meta['elapsed_s'] / 60:.1f}",
        command=_bench.reproduce_command(RUN_COMMAND, meta["argv"], output_flags=("--no-docs",)),
    )
    speed = _bench.fill(
        text["speed"],
        population_size=args.population_size,
        generations=", ".join(
            f"{g:,} at d = {d:,}" for d, g in zip(args.dims, args.generations, strict=True)
        ),
        x0_key=X0_KEY,
        runs=", ".join(
            f"{len(args.seeds) * rounds} runs at d = {d:,}"
            for d, rounds in zip(args.dims, args.rounds, strict=True)
        ),
        first_seed=args.seeds[0],
        last_seed=args.seeds[-1],
        num_seeds=len(args.seeds),
        solved=f"{SOLVED:g}",
        table=speed_table(rows),
        speed_met=sum(r["speed_met"] for r in rows),
        quality_met=sum(r["quality_met"] for r in rows),
        rows=len(rows),
        spread=spread(rows, "speed_ratio"),
        spread_plain=spread(rows, "speed_ratio_plain"),
        hyperparameters=hyperparameter_table(rows),
    )
    parts = [SECTION_TITLE, "", header, "", speed]
    if memory:
        parts += [
            "",
            _bench.fill(
                text["memory"],
                population=f"{args.memory_population:,}",
                d=f"{args.memory_d:,}",
                objective=args.memory_objective,
                generations=args.memory_generations,
                population_code=f"{args.memory_population:_}",
                chunk_size=args.chunk_size,
                evosax_fraction=f"{args.evosax_memory_fraction:.0%}",
                target_gb=f"{args.memory_target_gb:g}",
                table=memory_table(memory, True, target_mb),
            ),
        ]
        if any(not r.get("main_size") for r in memory):
            parts += [
                "",
                _bench.fill(
                    text["calibration"],
                    population=f"{args.memory_population:,}",
                    d=f"{args.calibration_d:,}",
                    table=memory_table(memory, False, target_mb),
                ),
            ]
    if profile:
        parts += ["", render_profile(text, args, profile)]
    return "\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-child", help="internal: run one memory configuration")
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run, no docs")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--objectives", nargs="+", choices=OBJECTIVES)
    parser.add_argument("--dims", type=int, nargs="+")
    parser.add_argument("--generations", type=int, nargs="+", help="one per d")
    parser.add_argument("--population-size", type=int, default=256)
    parser.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...)")
    parser.add_argument("--rounds", type=int, nargs="+", help="timing passes, one per d")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-strategies", nargs="+", choices=STRATEGIES)
    parser.add_argument("--memory-population", type=int)
    parser.add_argument("--memory-d", type=int)
    parser.add_argument("--calibration-d", type=int, help="smaller d to check XLA's estimate")
    parser.add_argument("--memory-objective", default="sphere", choices=OBJECTIVES)
    parser.add_argument("--memory-generations", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=200, help="ours, memory part (even)")
    parser.add_argument("--memory-target-gb", type=float, default=2.0)
    parser.add_argument(
        "--evosax-memory-fraction",
        type=float,
        default=0.4,
        help="run evosax's memory configuration only below this share of available memory",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    _bench.add_output_options(parser)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--skip-profile", action="store_true", help="no cost breakdown")
    parser.add_argument("--profile-generations", type=int, nargs="+", help="one per d")
    parser.add_argument("--profile-repeats", type=int)
    args = parser.parse_args(argv)
    quick = args.quick
    args.objectives = args.objectives or (["sphere"] if quick else list(OBJECTIVES))
    args.dims = args.dims or ([100] if quick else [100, 10_000])
    default_generations = {100: 100 if quick else 1000, 10_000: 100}
    args.generations = args.generations or [default_generations.get(d, 100) for d in args.dims]
    if len(args.generations) != len(args.dims):
        parser.error("give one --generations value per --dims value")
    args.seeds = list(range(args.seeds or (2 if quick else 5)))
    args.rounds = args.rounds or [1 if quick or d > 1000 else 3 for d in args.dims]
    if len(args.rounds) != len(args.dims):
        parser.error("give one --rounds value per --dims value")
    args.memory_strategies = args.memory_strategies or (
        ["open_es"] if quick else list(args.strategies)
    )
    args.memory_population = args.memory_population or (1000 if quick else 10_000)
    args.memory_d = args.memory_d or (10_000 if quick else 100_000)
    if args.calibration_d is None:
        args.calibration_d = 0 if quick else 10_000
    if args.output is None and not quick and not args.no_docs:
        args.output = _bench.BENCHMARKS_DOC
    default_profile = {100: 50 if quick else 1000, 10_000: 20}
    args.profile_generations = args.profile_generations or [
        default_profile.get(d, 20) for d in args.dims
    ]
    args.profile_repeats = args.profile_repeats or (2 if quick else 5)
    return args


def in_fresh_process(fn):
    """Runs ``fn()`` in a process forked from this one; returns its exit code.

    Linux carries a process's peak RSS across ``exec``: a child started by the big
    benchmark process reports the parent's ``ru_maxrss`` as its own. A process forked
    from the child while it is still small (before jax is imported) starts a new count,
    so its ``ru_maxrss`` is its own peak.
    """
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.memory_child:

        def child():
            require_evosax()
            result = memory_child(json.loads(args.memory_child))
            _bench.print_result(result)

        sys.exit(in_fresh_process(child))
    if args.from_json:
        rerender(args)
        return
    require_evosax()
    import jax

    start = time.perf_counter()
    threads = os.environ["OPENBLAS_NUM_THREADS"]
    versions = _bench.package_versions(VERSIONS_OF)
    log(f"[setup] {versions}; OPENBLAS_NUM_THREADS={threads}; devices {jax.devices()}")
    rows = []
    for d, generations, rounds in zip(args.dims, args.generations, args.rounds, strict=True):
        for objective_name in args.objectives:
            for strategy in args.strategies:
                log(
                    f"[speed] {LABELS[strategy]:9s} {objective_name:10s} d={d:<6,} "
                    f"pop={args.population_size} gens={generations:,} ..."
                )
                row = compare_row(
                    strategy,
                    objective_name,
                    d,
                    args.population_size,
                    generations,
                    args.seeds,
                    rounds,
                )
                rows.append(row)
                log(
                    f"[speed]   ours {row['ours']['gen_per_s']:9.1f} gen/s (plain "
                    f"{row['ours_plain']['gen_per_s']:9.1f})  evosax "
                    f"{row['evosax']['gen_per_s']:9.1f} gen/s  ratio {row['speed_ratio']:.2f}x"
                    f" (plain {row['speed_ratio_plain']:.2f}x)"
                    f" | median final ours {fmt_value(row['ours']['median_final'])} evosax "
                    f"{fmt_value(row['evosax']['median_final'])} (f(x0) "
                    f"{fmt_value(row['f_x0'])}) | compile ours {row['ours']['compile_s']:.1f}"
                    f" s evosax {row['evosax']['compile_s']:.1f} s | {verdict(row)}"
                )
    profile = {} if args.skip_profile else profile_all(args)
    memory = [] if args.skip_memory else memory_rows(args)
    meta = run_meta(argv, time.perf_counter() - start)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = {"meta": meta, "rows": rows, "memory": memory, "profile": profile}
        args.json.write_text(json.dumps(results, indent=1))
    report(args, rows, memory, profile, meta)


def report(args, rows, memory, profile, meta):
    section = render(args, rows, memory, profile, meta)
    print()
    print(section)
    if args.output:
        _bench.write_section(args.output, SECTION_TITLE, section)
        log(f"[done] wrote {args.output}; the run took {meta['elapsed_s'] / 60:.1f} min")


def rerender(args):
    """Rebuilds the report from a ``--json`` file (criteria and text as in this script)."""
    saved = json.loads(args.from_json.read_text())
    meta = saved["meta"]
    run_args = parse_args(meta["argv"])
    run_args.output = args.output
    for row in saved["rows"]:
        judge(row)
    report(run_args, saved["rows"], saved["memory"], saved["profile"], meta)


if __name__ == "__main__":
    main()
