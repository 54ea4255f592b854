"""Plain Python objectives: the ask/tell overhead against pycma, and parallel evaluation.

Part 1, overhead. A trivial NumPy objective, :math:`\\sum_i x_i^2` plus standard normal
noise, at d in {10, 100} and populations {10, 32, 100}: the wall time of
``es_toolkit.Optimizer``'s ``ask()`` + ``tell(values)`` per generation for ``cma_es`` and
``snes``, against pycma's ``CMAEvolutionStrategy(x0, sigma0, {"popsize": n, "verbose": -9,
"seed": s}).ask()`` + ``.tell()`` at the same d and population. Only ask and tell are
timed; the objective runs between them, untimed, the same for every side. After the first
generation (compilation for ours, timed on its own) and a warm-up, each repeat times a
block of generations of every side in turn; a side's time per generation is the median
over the repeats of its block time over the block's length. A side whose ``stop()`` says
it has ended is restarted (untimed, counted), so every timed generation is a real one.

Part 2, parallel efficiency. ``es_toolkit.minimize(f, x0, jit=False, evaluate_mean=False,
...)`` with ``cma_es`` at population 16, d = 10, end to end: a callback stamps the end of
every generation, and evaluations per second are the population over the median time
between consecutive stamps, which leaves out the workers' start-up (before the first
stamp) and any slow generation while workers still start. The objectives:

* ``sleeping_sphere``: sleeps 50 ms (no CPU) then returns the sphere; on ``workers=1``
  and ``workers=8`` (our own spawned worker processes), and on a Dask
  ``LocalCluster(n_workers=8, threads_per_worker=1, processes=True)`` through
  ``client.get_executor()``;
* ``busy_sphere``: a pure-Python loop calibrated once at start to take about 50 ms on one
  core, on ``workers=1`` and ``workers=2``.

The objectives are defined at the top level of this script, which the spawned workers
import as ``__mp_main__``. Everything runs single-threaded (``OPENBLAS_NUM_THREADS=1``,
XLA's CPU thread pools off), so pycma's NumPy and our XLA get one core each.

pycma and Dask are test extras (``pip install -e ".[test]"``), not es_toolkit
dependencies; a missing one leaves its rows out. Usage::

    .venv/bin/python scripts/bench_python_objectives.py            # full, about 3 minutes
    .venv/bin/python scripts/bench_python_objectives.py --quick    # seconds, prints only
    .venv/bin/python scripts/bench_python_objectives.py --from-json \\
        docs/results/python_objectives.json --output docs/benchmarks.md  # and its pictures
    .venv/bin/python scripts/bench_python_objectives.py --profile cma_es:100:100
"""

import os

# Single-threaded everywhere, set before NumPy and JAX load their thread pools; spawned
# workers inherit it.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import argparse
import functools
import importlib.util
import json
import math
import platform
import statistics
import sys
import time

import _bench
import _plots
import numpy as np

SECTION_TITLE = "## Plain Python objectives: ask/tell overhead and parallel evaluation"
RUN_COMMAND = ".venv/bin/python scripts/bench_python_objectives.py"
DEFAULT_JSON = _bench.ROOT / "docs" / "results" / "python_objectives.json"
OVERHEAD_IMAGE = "python_objectives_overhead.png"  # in images/ next to the Markdown file
PARALLEL_IMAGE = "python_objectives_parallel.png"
VERSIONS_OF = ("jax", "jaxlib", "numpy", "cma", "distributed")
THREAD_ENV = {name: os.environ[name] for name in ("OPENBLAS_NUM_THREADS", "XLA_FLAGS")}

# Part 1.
STRATEGIES = ("cma_es", "snes")
DIMS = (10, 100)
POPULATIONS = (10, 32, 100)
SIGMA0 = 1.0
REPEATS = 9
BLOCK = 40  # generations per timed block
WARMUP = 10  # untimed generations after the first
PYCMA_FLOOR = 1.0  # pycma / ours at every row
PYCMA_TARGET_D = 100
PYCMA_TARGET = 3.0  # pycma / ours at d = PYCMA_TARGET_D
PROFILE_GENERATIONS = 300

# Part 2.
PARALLEL_D = 10
PARALLEL_POPULATION = 16
OBJECTIVE_S = 0.05
WORKERS = 8
CPU_WORKERS = 2
SERIAL_GENERATIONS = 8  # on one worker: 16 x 50 ms = 0.8 s each
PARALLEL_GENERATIONS = 24
ROUNDS = 2
SLEEP_SPEEDUP_TARGET = 6.0  # workers=WORKERS against workers=1
DASK_TOLERANCE = 0.2  # Dask's rate at least (1 - this) x workers=WORKERS's
CPU_SPEEDUP_TARGET = 1.7  # workers=CPU_WORKERS against workers=1


def log(message):
    print(message, flush=True)


# --------------------------------------------------------------------------------------
# Objectives (top level: spawned workers import them from this module).
# --------------------------------------------------------------------------------------


def noisy_sphere(points, rng):
    """Part 1's objective of a whole population: :math:`\\sum_i x_i^2 + N(0, 1)` per row.
    The noise keeps the strategies from converging on a clean sphere."""
    return np.sum(np.asarray(points) ** 2, axis=1) + rng.standard_normal(len(points))


def sleeping_sphere(x, seconds):
    """The sphere after ``seconds`` of sleep: a slow objective that uses no CPU."""
    time.sleep(seconds)
    return float(np.sum(np.square(x)))


def busy_loop(iterations):
    """``iterations`` steps of pure-Python arithmetic: CPU work that holds the GIL."""
    total = 0.0
    for step in range(iterations):
        total += step * 0.5
    return total


def busy_sphere(x, iterations):
    """The sphere after ``busy_loop(iterations)``: a slow objective that uses one core."""
    busy_loop(iterations)
    return float(np.sum(np.square(x)))


def calibrate_busy_loop(seconds, probe=200_000, tries=5):
    """How many ``busy_loop`` iterations take ``seconds`` here: from the fastest of
    ``tries`` timed probes (the one least slowed down by other jobs)."""
    fastest = math.inf
    for _ in range(tries):
        start = time.perf_counter()
        busy_loop(probe)
        fastest = min(fastest, time.perf_counter() - start)
    return max(1, round(probe * seconds / fastest))


# --------------------------------------------------------------------------------------
# Part 1: ask + tell, ours against pycma.
# --------------------------------------------------------------------------------------


class OursSide:
    """An ``es_toolkit.Optimizer`` that starts a fresh run (a new key, the same compiled
    ask and tell) when ``restart`` is called."""

    def __init__(self, strategy_name, d, population, seed):
        from es_toolkit import strategies

        self.strategy = getattr(strategies, strategy_name)(population, SIGMA0)
        self.x0 = np.ones(d)
        self.seed = seed
        self.runs = 0
        self.restart()

    def restart(self):
        import jax

        from es_toolkit import Optimizer

        key = jax.random.fold_in(jax.random.key(self.seed), self.runs)
        self.optimizer = Optimizer(self.strategy, self.x0, key=key)
        self.runs += 1

    def ask(self):
        return self.optimizer.ask()

    def tell(self, points, values):
        self.optimizer.tell(values)

    def stop(self):
        return self.optimizer.stop()


class PycmaSide:
    """pycma's ``CMAEvolutionStrategy``, restarted with another seed on ``restart``."""

    def __init__(self, d, population, seed):
        self.x0 = np.ones(d)
        self.population = population
        self.seed = seed
        self.runs = 0
        self.restart()

    def restart(self):
        import cma

        options = {"popsize": self.population, "verbose": -9, "seed": self.seed + self.runs}
        self.es = cma.CMAEvolutionStrategy(self.x0, SIGMA0, options)
        self.runs += 1

    def ask(self):
        return self.es.ask()

    def tell(self, points, values):
        self.es.tell(points, values)

    def stop(self):
        return bool(self.es.stop())


def timed_generations(side, generations, rng):
    """Runs ``generations`` generations of ``side`` on ``noisy_sphere``; returns the
    seconds spent in ask and tell, and how many times the side had stopped and was
    restarted (outside the timing)."""
    elapsed, restarts = 0.0, 0
    for _ in range(generations):
        if side.stop():
            side.restart()
            restarts += 1
        start = time.perf_counter()
        points = side.ask()
        asked = time.perf_counter()
        values = noisy_sphere(points, rng)
        told = time.perf_counter()
        side.tell(points, values)
        elapsed += (asked - start) + (time.perf_counter() - told)
    return elapsed, restarts


def started_side(make_side, rng):
    """A side made by ``make_side`` and its first generation, timed separately: its
    construction and its first ask + tell (compilation, for ours)."""
    start = time.perf_counter()
    side = make_side()
    built = time.perf_counter()
    first, _ = timed_generations(side, 1, rng)
    return side, {"setup_s": built - start, "first_generation_s": first}


def measure_overhead(d, population, sides, repeats, block, warmup, seed):
    """One (d, population) row: every side's first-call times and its milliseconds per
    generation, the median over ``repeats`` blocks of ``block`` generations taken in
    turn with the other sides."""
    rng = np.random.default_rng(seed)
    makers = {
        "pycma": functools.partial(PycmaSide, d, population, seed + 1),
        **{name: functools.partial(OursSide, name, d, population, seed) for name in STRATEGIES},
    }
    started, results = {}, {}
    for name in sides:
        started[name], results[name] = started_side(makers[name], rng)
        timed_generations(started[name], warmup, rng)
        results[name].update(block_ms=[], restarts=0)
    for _ in range(repeats):
        for name, side in started.items():
            seconds, restarts = timed_generations(side, block, rng)
            results[name]["block_ms"].append(1e3 * seconds / block)
            results[name]["restarts"] += restarts
    for values in results.values():
        values["ms_per_generation"] = statistics.median(values["block_ms"])
    return {"d": d, "population": population, "block": block, "warmup": warmup, "sides": results}


def profile_ours(strategy_name, d, population, generations=PROFILE_GENERATIONS, top=15):
    """cProfile of ``generations`` generations of ask + tell after a warm-up, sorted by
    own time: the text of the ``top`` entries. Time inside a compiled call shows up in
    the Python function that makes it (``tell``, ``ask``) or waits for its result
    (``jax.Array._value``, ``numpy.asarray``)."""
    import cProfile
    import io
    import pstats

    rng = np.random.default_rng(0)
    side = OursSide(strategy_name, d, population, seed=0)
    timed_generations(side, WARMUP, rng)
    seconds, _ = timed_generations(side, generations, rng)
    profiler = cProfile.Profile()
    profiler.enable()
    timed_generations(side, generations, rng)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    header = (
        f"{strategy_name}, d = {d}, population {population}: "
        f"{1e3 * seconds / generations:.3f} ms per generation of ask + tell unprofiled\n"
    )
    return header + text.getvalue()


# --------------------------------------------------------------------------------------
# Part 2: minimize(jit=False) on workers and on Dask.
# --------------------------------------------------------------------------------------


def generation_stamps(objective, generations, population, **evaluation):
    """Runs ``minimize(objective, ones(d), jit=False, ...)`` for ``generations``
    generations; returns the seconds from the call to the end of each generation."""
    import jax

    from es_toolkit import minimize
    from es_toolkit.strategies import cma_es

    stamps = []
    start = time.perf_counter()
    result = minimize(
        objective,
        np.ones(PARALLEL_D),
        strategy=cma_es(population, SIGMA0),
        num_generations=generations,
        key=jax.random.key(0),
        callback=lambda info: stamps.append(time.perf_counter() - start),
        progress=False,
        evaluate_mean=False,
        jit=False,
        **evaluation,
    )
    if len(stamps) != generations:
        raise RuntimeError(f"stopped after {len(stamps)} generations: {result.stop_reason}")
    return stamps


def rate_of(stamps, population):
    """Evaluations per second from the generations' end times: over the median
    generation (the first generation, with the start-up, left out), and over the mean."""
    intervals = np.diff(stamps)
    median = float(np.median(intervals))
    return {
        "generation_s": intervals.tolist(),
        "first_generation_s": stamps[0],
        "median_generation_s": median,
        "evaluations_per_s": population / median,
        "mean_evaluations_per_s": population * len(intervals) / (stamps[-1] - stamps[0]),
    }


def executor_stamps(executor, objective, generations, population):
    """The Dask executor alone, as a floor for any evaluation on it: each generation
    submits ``population`` calls of ``objective`` (``pure=False``, as the evaluator does,
    so none is a cached duplicate) and waits for all; the seconds from the start to the
    end of each generation."""
    members = [np.ones(PARALLEL_D) for _ in range(population)]
    stamps, start = [], time.perf_counter()
    for _ in range(generations):
        futures = [executor.submit(objective, x, pure=False) for x in members]
        for future in futures:
            future.result()
        stamps.append(time.perf_counter() - start)
    return stamps


def run_on_workers(objective, workers, generations, population):
    """``{"workers": stamps}`` of ``minimize`` on ``workers`` processes of our own, and
    nothing more to record."""
    stamps = generation_stamps(objective, generations, population, workers=workers)
    return {"workers": stamps}, {}


def run_on_dask(objective, workers, generations, population):
    """On a fresh local Dask cluster of ``workers`` single-threaded processes (closed
    afterwards): ``{"dask_executor": stamps, "dask": stamps}``, of the executor alone,
    then of ``minimize``, and ``{"cluster_start_s": seconds}`` the cluster took to start."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        started = time.perf_counter() - start
        executor = client.get_executor()
        stamps = {"dask_executor": executor_stamps(executor, objective, generations, population)}
        stamps["dask"] = generation_stamps(objective, generations, population, executor=executor)
    return stamps, {"cluster_start_s": started}


def parallel_cases(args):
    """The runs of part 2: (objective name, evaluator name, workers, generations)."""
    cases = [
        ("sleep", "workers", 1, args.serial_generations),
        ("sleep", "workers", args.workers, args.parallel_generations),
    ]
    if args.dask:
        cases.append(("sleep", "dask", args.workers, args.parallel_generations))
    cases += [
        ("cpu", "workers", 1, args.serial_generations),
        ("cpu", "workers", args.cpu_workers, args.parallel_generations),
    ]
    return cases


def measure_parallel(args):
    """Every case of ``parallel_cases`` ``args.rounds`` times, the rounds one after the
    other; each run's rate, and each case's rate over the intervals of all rounds."""
    iterations = calibrate_busy_loop(args.objective_s)
    start = time.perf_counter()
    busy_loop(iterations)
    calibration = {"iterations": iterations, "check_s": time.perf_counter() - start}
    log(f"[parallel] busy loop: {iterations:,} iterations, {calibration['check_s']:.3f} s")
    objectives = {
        "sleep": functools.partial(sleeping_sphere, seconds=args.objective_s),
        "cpu": functools.partial(busy_sphere, iterations=iterations),
    }
    runs = []
    for round_number in range(args.rounds):
        for objective, evaluator, workers, generations in parallel_cases(args):
            case = {"round": round_number, "objective": objective, "workers": workers}
            case |= {"generations": generations, "load": _bench.load_average()}
            run_case = run_on_dask if evaluator == "dask" else run_on_workers
            begun = time.perf_counter()
            stamps, extra = run_case(objectives[objective], workers, generations, args.population)
            case |= {"total_s": time.perf_counter() - begun, **extra}
            for name, times in stamps.items():
                run = {**case, "evaluator": name, **rate_of(times, args.population)}
                log(
                    f"[parallel] {objective} on {name}={workers}: "
                    f"{run['evaluations_per_s']:.1f} evaluations/s ({run['total_s']:.0f} s)"
                )
                runs.append(run)
    return {
        "population": args.population,
        "d": PARALLEL_D,
        "objective_s": args.objective_s,
        "workers": args.workers,
        "cpu_workers": args.cpu_workers,
        "calibration": calibration,
        "runs": runs,
        "cases": combine_rounds(runs, args.population),
    }


def combine_rounds(runs, population):
    """Per (objective, evaluator, workers): the rate over the median of every round's
    generation times."""
    grouped = {}
    for run in runs:
        key = (run["objective"], run["evaluator"], run["workers"])
        grouped.setdefault(key, []).extend(run["generation_s"])
    return [
        {
            "objective": objective,
            "evaluator": evaluator,
            "workers": workers,
            "median_generation_s": statistics.median(times),
            "evaluations_per_s": population / statistics.median(times),
        }
        for (objective, evaluator, workers), times in grouped.items()
    ]


# --------------------------------------------------------------------------------------
# Running it all.
# --------------------------------------------------------------------------------------


def run_all(args, argv):
    start = time.perf_counter()
    load_before = _bench.load_average()
    log(f"[setup] {_bench.package_versions(VERSIONS_OF)}; load {load_before}")
    overhead = []
    for d in args.dims:
        for population in args.populations:
            row = measure_overhead(
                d, population, args.sides, args.repeats, args.block, args.warmup, args.seed
            )
            log(
                f"[overhead] d={d} population={population}: "
                + ", ".join(
                    f"{name} {values['ms_per_generation']:.3f} ms"
                    for name, values in row["sides"].items()
                )
            )
            overhead.append(row)
    parallel = measure_parallel(args) if not args.skip_parallel else None
    meta = {
        "argv": argv,
        "elapsed_s": time.perf_counter() - start,
        "machine": _bench.machine_description(),
        "cores": os.cpu_count(),
        "cpu": _bench.cpu_model(),
        "python": platform.python_version(),
        "versions": _bench.package_versions(VERSIONS_OF),
        "library": _bench.library_version(),
        "load_before": load_before,
        "load_after": _bench.load_average(),
        "thread_env": THREAD_ENV,
        "date": _bench.today(),
        "targets_apply": targets_apply(args),
    }
    return {"meta": meta, "overhead": overhead, "parallel": parallel}


def targets_apply(args):
    """Whether part 2 ran the issue's configuration, which its targets are about."""
    return (args.workers, args.cpu_workers, args.population, args.objective_s) == (
        WORKERS,
        CPU_WORKERS,
        PARALLEL_POPULATION,
        OBJECTIVE_S,
    )


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def fmt_ms(value):
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def overhead_verdict(d, vs_pycma):
    """Met or not: pycma / ours >= PYCMA_FLOOR everywhere, >= PYCMA_TARGET at d = 100."""
    parts = [f">= {PYCMA_FLOOR:g}x: {'met' if vs_pycma >= PYCMA_FLOOR else '**not met**'}"]
    if d == PYCMA_TARGET_D:
        met = vs_pycma >= PYCMA_TARGET
        parts.append(f">= {PYCMA_TARGET:g}x: {'met' if met else '**not met**'}")
    return "; ".join(parts)


def overhead_table(rows):
    lines = [
        "| d | population | strategy | ours (ms / generation) | pycma (ms / generation) "
        "| pycma / ours | target |",
        "|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        pycma = row["sides"].get("pycma")
        for name in STRATEGIES:
            ours = row["sides"].get(name)
            if ours is None:
                continue
            cells = [str(row["d"]), str(row["population"]), f"`{name}`"]
            cells.append(fmt_ms(ours["ms_per_generation"]))
            if pycma is None:
                cells += ["-", "-", "-"]
            else:
                vs_pycma = pycma["ms_per_generation"] / ours["ms_per_generation"]
                cells += [
                    fmt_ms(pycma["ms_per_generation"]),
                    f"{vs_pycma:.2f}x",
                    overhead_verdict(row["d"], vs_pycma),
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def first_call_range(rows, sides, key):
    """The least and most of ``key`` over ``sides`` of ``rows``: seconds, or
    milliseconds where all are under a second."""
    values = [row["sides"][s][key] for row in rows for s in sides if s in row["sides"]]
    if not values:
        return "-"
    if max(values) < 1:
        return f"{1e3 * min(values):.1f}-{1e3 * max(values):.1f} ms"
    return f"{min(values):.2f}-{max(values):.2f} s"


def restart_count(rows):
    return sum(values["restarts"] for row in rows for values in row["sides"].values())


def evaluator_label(evaluator, workers):
    if evaluator == "dask":
        return f"Dask `LocalCluster`, {workers} processes"
    if evaluator == "dask_executor":
        return f"(Dask's executor alone, {workers} processes: reference)"
    return f"`workers={workers}`"


def parallel_table(parallel, applies):
    """One row per case; the speed-up against its reference and the target verdict."""
    population = parallel["population"]
    objective_ms = f"{1e3 * parallel['objective_s']:g} ms"
    names = {"sleep": f"sleep {objective_ms}", "cpu": f"CPU-bound {objective_ms}"}
    cases = {(c["objective"], c["evaluator"], c["workers"]): c for c in parallel["cases"]}
    lines = [
        "| objective | evaluated on | evaluations / s | ms / generation "
        f"(population {population}) | evaluations / s per round | ratio | target |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for (objective, evaluator, workers), case in cases.items():
        reference, threshold = comparison(objective, evaluator, workers, cases, applies)
        ratio_cell = target_cell = "-"
        if reference is not None:
            ratio = case["evaluations_per_s"] / reference["evaluations_per_s"]
            name = evaluator_label(reference["evaluator"], reference["workers"])
            ratio_cell = f"{ratio:.2f}x {name}"
            if threshold is not None:
                met = "met" if ratio >= threshold else "**not met**"
                target_cell = f">= {threshold:g}x: {met}"
        lines.append(
            f"| {names[objective]} | {evaluator_label(evaluator, workers)} "
            f"| {case['evaluations_per_s']:.1f} | {1e3 * case['median_generation_s']:.0f} "
            f"| {per_round(parallel['runs'], objective, evaluator, workers)} "
            f"| {ratio_cell} | {target_cell} |"
        )
    return "\n".join(lines)


def per_round(runs, objective, evaluator, workers):
    """The case's rate in each round, in order, for example ``148.9, 149.7``."""
    return ", ".join(
        f"{run['evaluations_per_s']:.1f}"
        for run in runs
        if (run["objective"], run["evaluator"], run["workers"]) == (objective, evaluator, workers)
    )


def comparison(objective, evaluator, workers, cases, applies):
    """The case a case is compared with, and the ratio it should reach (``None`` where
    the run is not the issue's configuration)."""
    if evaluator.startswith("dask"):
        reference = cases.get((objective, "workers", workers))
        return reference, (1 - DASK_TOLERANCE if applies and evaluator == "dask" else None)
    if workers == 1:
        return None, None
    reference = cases.get((objective, "workers", 1))
    target = SLEEP_SPEEDUP_TARGET if objective == "sleep" else CPU_SPEEDUP_TARGET
    return reference, (target if applies else None)


def render(saved):
    text = _bench.prose("python_objectives")
    meta = saved["meta"]
    parts = [
        SECTION_TITLE,
        _bench.fill(
            text["header"],
            machine=meta["machine"],
            python=meta["python"],
            versions=meta["versions"],
            library=meta["library"],
            date=meta["date"],
            minutes=f"{meta['elapsed_s'] / 60:.1f}",
            load_before=meta["load_before"],
            load_after=meta["load_after"],
            openblas=meta["thread_env"]["OPENBLAS_NUM_THREADS"],
            xla_flags=meta["thread_env"]["XLA_FLAGS"],
            command=_bench.reproduce_command(
                RUN_COMMAND, meta["argv"], output_flags=("--no-docs",)
            ),
        ),
    ]
    rows = saved["overhead"]
    if rows:
        first = rows[0]
        parts.append(
            _bench.fill(
                text["overhead"],
                sigma0=SIGMA0,
                repeats=len(next(iter(first["sides"].values()))["block_ms"]),
                block=first["block"],
                warmup=first["warmup"],
                table=overhead_table(rows),
                ours_first=first_call_range(rows, STRATEGIES, "first_generation_s"),
                ours_setup=first_call_range(rows, STRATEGIES, "setup_s"),
                pycma_first=first_call_range(rows, ("pycma",), "first_generation_s"),
                restarts=restart_count(rows),
            )
        )
    parallel = saved["parallel"]
    if parallel:
        runs = parallel["runs"]
        parts.append(
            _bench.fill(
                text["parallel"],
                population=parallel["population"],
                d=parallel["d"],
                workers=parallel["workers"],
                objective_ms=f"{1e3 * parallel['objective_s']:g}",
                iterations=f"{parallel['calibration']['iterations']:,}",
                check_ms=f"{1e3 * parallel['calibration']['check_s']:.0f}",
                rounds=1 + max(run["round"] for run in runs),
                table=parallel_table(parallel, meta["targets_apply"]),
                startup=startup_text(runs),
            )
        )
    return "\n\n".join(parts) + "\n"


def startup_text(runs):
    """The first generation (start-up included) of each evaluator, over its runs."""
    spans = {}
    for run in runs:
        if run["evaluator"] == "dask_executor":  # timed once its cluster ran
            continue
        label = evaluator_label(run["evaluator"], run["workers"])
        seconds = run["first_generation_s"] + run.get("cluster_start_s", 0.0)
        spans.setdefault(label, []).append(seconds)
    return "; ".join(
        f"{label} {min(values):.1f}-{max(values):.1f} s" for label, values in spans.items()
    )


# --------------------------------------------------------------------------------------
# Pictures.
# --------------------------------------------------------------------------------------


OVERHEAD_SIDES = {  # side: legend label, color
    "cma_es": ("ours, cma_es", _plots.OURS),
    "snes": ("ours, snes", _plots.OURS_VARIANT),
    "pycma": ("pycma (CMA-ES)", _plots.PYCMA),
}
EVALUATOR_COLORS = {"workers": _plots.OURS, "dask": _plots.DASK, "dask_executor": _plots.REFERENCE}


def side_ms(rows, side):
    """``side``'s ms per generation in each row (``None`` where it did not run)."""
    return [row["sides"][side]["ms_per_generation"] if side in row["sides"] else None
            for row in rows]  # fmt: skip


def plot_overhead(rows, path):
    """Milliseconds of ask + tell per generation at each d and population: ours
    (``cma_es``, ``snes``) and pycma side by side, log scale."""
    plt = _plots.pyplot()
    series = [
        (label, color, side_ms(rows, side))
        for side, (label, color) in OVERHEAD_SIDES.items()
        if any(side in row["sides"] for row in rows)
    ]
    groups = [f"d = {row['d']}\npopulation {row['population']}" for row in rows]
    figure, axes = plt.subplots(figsize=(9, 4.2))
    _plots.grouped_bars(axes, groups, series)
    _plots.plain_log_scale(axes)
    axes.set_ylabel("ms per generation (ask + tell)")
    axes.set_title("Ask + tell overhead on a plain Python objective (lower is better)")
    axes.legend(loc="upper left")
    _plots.save(figure, path)


def case_label(case):
    """``ours, workers=8``, ``Dask, 8 processes`` or ``Dask executor alone, 8 processes``,
    on two lines."""
    if case["evaluator"] == "workers":
        return f"ours,\nworkers={case['workers']}"
    if case["evaluator"] == "dask":
        return f"Dask,\n{case['workers']} processes"
    return f"Dask executor alone,\n{case['workers']} processes"


def plot_parallel(parallel, path):
    """Evaluations per second of each evaluator: the sleeping objective in one panel,
    the CPU-bound one in the other."""
    plt = _plots.pyplot()
    objective_ms = f"{1e3 * parallel['objective_s']:g} ms"
    titles = {"sleep": f"sleep {objective_ms} (no CPU)", "cpu": f"CPU-bound {objective_ms}"}
    panels = {
        title: [case for case in parallel["cases"] if case["objective"] == objective]
        for objective, title in titles.items()
    }
    panels = {title: cases for title, cases in panels.items() if cases}
    figure, all_axes = plt.subplots(
        1,
        len(panels),
        figsize=(8, 4.2),
        squeeze=False,
        gridspec_kw={"width_ratios": [len(cases) + 1 for cases in panels.values()]},
    )
    for axes, (title, cases) in zip(all_axes[0], panels.items(), strict=True):
        rates = [case["evaluations_per_s"] for case in cases]
        colors = [EVALUATOR_COLORS[case["evaluator"]] for case in cases]
        bars = axes.bar(range(len(cases)), rates, 0.6, color=colors)
        # inside the bars: the ideal rates' dashes run just above them
        axes.bar_label(bars, [f"{rate:.1f}" for rate in rates], label_type="center", color="white")
        axes.set_xticks(range(len(cases)), [case_label(case) for case in cases], fontsize=8)
        if cases[0]["objective"] == "sleep":  # sleeping takes exactly its time
            ideal = [case["workers"] / parallel["objective_s"] for case in cases]
            axes.hlines(ideal, [k - 0.35 for k in range(len(cases))],
                        [k + 0.35 for k in range(len(cases))], colors="black",
                        linestyles="dashed", linewidth=1,
                        label=f"ideal: workers / {objective_ms}")  # fmt: skip
            axes.legend(loc="upper left", fontsize=8)
            axes.set_ylim(0, 1.2 * max(ideal + rates))
        axes.set_title(title)
        axes.grid(True, axis="y", alpha=0.3)
        axes.set_axisbelow(True)
    all_axes[0][0].set_ylabel("evaluations per second (higher is better)")
    figure.suptitle(
        f"Parallel evaluation, population {parallel['population']}, d = {parallel['d']}"
    )
    _plots.save(figure, path)


def draw_pictures(saved, markdown):
    """The pictures of the parts ``saved`` holds, in ``images/`` next to ``markdown``."""
    if saved["overhead"]:
        plot_overhead(saved["overhead"], _plots.image_path(markdown, OVERHEAD_IMAGE))
    if saved["parallel"]:
        plot_parallel(saved["parallel"], _plots.image_path(markdown, PARALLEL_IMAGE))


def report(saved, args):
    section = render(saved)
    print()
    print(section)
    if args.output:
        draw_pictures(saved, args.output)
        _bench.write_section(args.output, SECTION_TITLE, section)
        log(f"[done] wrote {args.output}")


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def profile_spec(text):
    """``STRATEGY:D:POPULATION``, for example ``cma_es:100:100``."""
    try:
        name, d, population = text.split(":")
        spec = name, int(d), int(population)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected STRATEGY:D:POPULATION (e.g. cma_es:100:100), got {text!r}"
        ) from None
    if name not in STRATEGIES:
        raise argparse.ArgumentTypeError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    return spec


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds; prints only by default")
    parser.add_argument("--dims", type=int, nargs="+", help="part 1 dimensions")
    parser.add_argument("--populations", type=int, nargs="+", help="part 1 populations")
    parser.add_argument("--repeats", type=int, help="part 1 timed blocks per side")
    parser.add_argument("--block", type=int, help="part 1 generations per block")
    parser.add_argument("--warmup", type=int, help="part 1 untimed generations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, help=f"part 2 parallel workers ({WORKERS})")
    parser.add_argument("--cpu-workers", type=int, help=f"for the CPU-bound one ({CPU_WORKERS})")
    parser.add_argument("--population", type=int, help=f"part 2 ({PARALLEL_POPULATION})")
    parser.add_argument("--objective-s", type=float, help=f"part 2 seconds ({OBJECTIVE_S})")
    parser.add_argument("--serial-generations", type=int)
    parser.add_argument("--parallel-generations", type=int)
    parser.add_argument("--rounds", type=int, help="part 2 runs of every case")
    parser.add_argument("--no-dask", dest="dask", action="store_false", help="skip Dask")
    parser.add_argument("--skip-parallel", action="store_true", help="part 1 only")
    parser.add_argument(
        "--profile",
        type=profile_spec,
        metavar="STRATEGY:D:POPULATION",
        help=f"only print a cProfile of {PROFILE_GENERATIONS} generations of our ask + tell",
    )
    _bench.add_output_options(parser)
    parser.add_argument("--no-docs", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)
    quick = args.quick

    def default(value, full, short):
        return value if value is not None else (short if quick else full)

    args.dims = default(args.dims, list(DIMS), [10])
    args.populations = default(args.populations, list(POPULATIONS), [10])
    args.repeats = default(args.repeats, REPEATS, 2)
    args.block = default(args.block, BLOCK, 5)
    args.warmup = default(args.warmup, WARMUP, 2)
    args.workers = default(args.workers, WORKERS, 2)
    args.cpu_workers = default(args.cpu_workers, CPU_WORKERS, 2)
    args.population = default(args.population, PARALLEL_POPULATION, 4)
    args.objective_s = default(args.objective_s, OBJECTIVE_S, 0.02)
    args.serial_generations = default(args.serial_generations, SERIAL_GENERATIONS, 3)
    args.parallel_generations = default(args.parallel_generations, PARALLEL_GENERATIONS, 3)
    args.rounds = default(args.rounds, ROUNDS, 1)
    args.sides = [*(["pycma"] if importlib.util.find_spec("cma") else []), *STRATEGIES]
    args.dask = args.dask and importlib.util.find_spec("distributed") is not None
    if not (quick or args.no_docs or args.from_json or args.profile):
        args.output = args.output or _bench.BENCHMARKS_DOC
        args.json = args.json or DEFAULT_JSON
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.profile:
        print(profile_ours(*args.profile))
        return
    if args.from_json:
        report(json.loads(args.from_json.read_text()), args)
        return
    missing = [name for name in ("cma", "distributed") if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(f"warning: {', '.join(missing)} not installed: rows left out\n")
    saved = run_all(args, argv)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(saved, indent=1))
    report(saved, args)


if __name__ == "__main__":
    main()
