"""BBOB benchmark of es_toolkit's CMA-ES family against pycma and evosax on COCO's suite.

The problems are COCO's noiseless ``bbob`` suite: 24 functions in dimensions 2, 3, 5, 10 and
20, instances 1-5 by default (``--functions``, ``--dimensions``, ``--instances``). Every
optimizer gets ``10,000 d`` evaluations, stops at COCO's final target
:math:`f_\\mathrm{opt} + 10^{-8}` and starts from the problem's ``initial_solution`` (the
origin) with initial step size 2, as COCO's pycma examples do:

* ``ours-cma``: ``es_toolkit.minimize(f, x0, strategy=cma_es(4 + floor(3 ln d),
  sigma=2.0), restarts="bipop", max_evaluations=budget, target=target,
  evaluate_mean=False)`` under ``jax_enable_x64`` with a float64 ``x0``. ``f`` calls the
  current problem through ``jax.pure_callback(..., vmap_method="broadcast_all")``, so one
  ``f`` and one strategy serve every problem of a dimension and nothing compiles per problem.
* ``ours-sep``: the same with ``sep_cma_es`` and ``restarts="ipop"``.
* ``pycma``: ``cma.fmin2(f, x0, 2, {"maxfevals": budget, "ftarget": target,
  "verbose": -9, "seed": seed}, restarts=9, bipop=True)``.
* ``evosax``: evosax's ``CMA_ES`` as its users run it, float32 with its default
  parameters (``std_init`` set to 2), in an ask-evaluate-tell loop, restarted by its
  ``BIPOPRestart`` (stop criteria ``spread_cond`` and ``cma_cond``) until the budget or
  the target.

Each (optimizer, dimension) runs in a fresh single-threaded process, at most ``--jobs`` at
once. It evaluates through the cocoex problem observed by a ``cocoex.Observer`` (the data
cocopp reads, under ``--workdir``) and records per problem whether the target was reached,
the evaluations used (to the target, else all) and the wall time. The first evaluation at
or below the target counts. cocoex 2.8.2's ``Problem`` does not expose
``final_target_fvalue1``, so :math:`f_\\mathrm{opt}` comes from pycma's
``bbobbenchmarks.instantiate(function, instance)``, which computes the same functions (each
worker checks it on an unobserved copy of every problem before running it).

pycma, coco-experiment, cocopp and evosax are benchmark-only tools, not es_toolkit
dependencies. Install them in the benchmark virtual environment (cocopp 2.9.1 imports
``six`` without declaring it)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -e . "jax==0.10.2" "jaxlib==0.10.2" "evosax==0.3.2" \\
        "cma==4.5.0" "coco-experiment==2.8.2" "cocopp==2.9.1" six

Usage::

    .venv-bench/bin/python scripts/bench_bbob.py --json docs/results/bbob.json
    .venv-bench/bin/python scripts/bench_bbob.py --dimensions 2 3 --instances 1  # a sample
    .venv-bench/bin/python scripts/bench_bbob.py --from-json docs/results/bbob.json
"""

import argparse
import collections
import concurrent.futures
import importlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _bench

SECTION_TITLE = "## BBOB: the CMA-ES family against pycma and evosax"
OPTIMIZERS = {  # name (also cocopp's algorithm name, short: its legends cut them) -> in the doc
    "ours-cma": "ours: `cma_es` + BIPOP",
    "ours-sep": "ours: `sep_cma_es` + IPOP",
    "pycma": "pycma `fmin2`, BIPOP",
    "evosax": "evosax `CMA_ES` + `BIPOPRestart`",
}
OURS, REFERENCE = "ours-cma", "pycma"  # the comparison the targets judge
DIMENSIONS = (2, 3, 5, 10, 20)
FUNCTIONS = tuple(range(1, 25))
SIGMA0 = 2.0
TARGET_PRECISION = 1e-8  # COCO's final target: f_opt + 1e-8
VERSIONS_OF = ("jax", "jaxlib", "numpy", "cma", "coco-experiment", "cocopp", "evosax")
RUN_COMMAND = ".venv-bench/bin/python scripts/bench_bbob.py"
SINGLE_THREADED = {
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
IMAGES_DIR = _bench.ROOT / "docs" / "images"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# One problem: the observed cocoex problem, counted.
# --------------------------------------------------------------------------------------


class CountedProblem:
    """The observed cocoex problem, counting evaluations and noting the first one at or
    below ``target``; optimizers call it on one point at a time."""

    def __init__(self, problem, target: float):
        self.problem = problem
        self.target = target
        self.evaluations = 0
        self.hit = None  # evaluations when the target was first reached
        self.best = math.inf

    def __call__(self, x) -> float:
        value = float(self.problem(x))
        self.evaluations += 1
        self.best = min(self.best, value)
        if self.hit is None and value <= self.target:
            self.hit = self.evaluations
        return value

    @property
    def solved(self) -> bool:
        return self.hit is not None


def optimal_value(problem) -> float:
    """:math:`f_\\mathrm{opt}` of a bbob problem, from pycma's implementation of the suite."""
    from cma import bbobbenchmarks

    return float(bbobbenchmarks.instantiate(problem.id_function, problem.id_instance)[1])


def check_optimal_value(problem, seed: int) -> None:
    """``problem`` (unobserved) and pycma's function agree at random points near the
    origin, to rounding (an error otherwise): pycma's ``f_opt``, a multiple of 0.01 added
    to every value, is then the problem's."""
    import numpy as np
    from cma import bbobbenchmarks

    function, _ = bbobbenchmarks.instantiate(problem.id_function, problem.id_instance)
    points = np.random.default_rng(seed).uniform(-1, 1, size=(5, problem.dimension))
    ours = np.array([problem(x) for x in points])
    theirs = np.asarray(function(points), float)
    if not np.allclose(ours, theirs, rtol=1e-6, atol=1e-6):
        raise RuntimeError(f"{problem.id}: pycma's bbob function differs from cocoex's")


def problem_seed(base: int, dimension: int, function: int, instance: int) -> int:
    """A distinct positive seed per problem (pycma needs one above 0)."""
    return base + 100_000 * instance + 1000 * function + dimension


# --------------------------------------------------------------------------------------
# The optimizers: each makes a ``solve(problem, x0, budget, seed) -> dict`` for a dimension.
# --------------------------------------------------------------------------------------


def ours_solver(dimension: int, factory_name: str, restarts: str):
    """es_toolkit's ``minimize`` with ``factory_name`` restarted by ``restarts``; ``f``
    calls whichever problem is current, so the jitted blocks compile once per population
    size for all the problems of the dimension."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    from es_toolkit import minimize
    from es_toolkit.strategies.cma_es import cma_es_default_population_size

    factory = getattr(
        importlib.import_module(f"es_toolkit.strategies.{factory_name}"), factory_name
    )
    strategy = factory(cma_es_default_population_size(dimension), sigma=SIGMA0)
    current = {}

    def evaluate_rows(x):
        x = np.asarray(x)
        rows = x.reshape(-1, x.shape[-1])
        values = [current["problem"](row) for row in rows]
        return np.asarray(values, x.dtype).reshape(x.shape[:-1])

    def f(x):
        shape = jax.ShapeDtypeStruct((), x.dtype)
        return jax.pure_callback(evaluate_rows, shape, x, vmap_method="broadcast_all")

    def solve(problem: CountedProblem, x0, budget: int, seed: int) -> dict:
        current["problem"] = problem
        result = minimize(
            f,
            jnp.asarray(x0, jnp.float64),
            strategy=strategy,
            num_generations=budget,  # at least one evaluation per generation
            key=jax.random.key(seed),
            target=problem.target,
            progress=False,
            max_evaluations=budget,
            restarts=restarts,
            evaluate_mean=False,
        )
        return {
            "restarts": result.num_restarts,
            "stop_reason": result.stop_reason,
            "reported_evaluations": result.num_evaluations,
        }

    return solve


def pycma_solver(dimension: int):
    import cma

    def solve(problem: CountedProblem, x0, budget: int, seed: int) -> dict:
        options = {"maxfevals": budget, "ftarget": problem.target, "verbose": -9, "seed": seed}
        _, es = cma.fmin2(problem, x0, SIGMA0, options, restarts=9, bipop=True)
        return {"stop_reason": ", ".join(sorted(es.stop()))}

    return solve


def evosax_solver(dimension: int):
    """evosax's CMA_ES and BIPOPRestart in float32 (JAX's default), a loop of ask,
    evaluate and tell; one algorithm object per population size and one restart controller
    per start, so the jitted ask, tell and restart check compile once per size for all the
    problems of the dimension."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from evosax.algorithms import CMA_ES
    from evosax.core.restart import BIPOPRestart, cma_cond, spread_cond

    algorithms = {}

    def algorithm(population_size, solution):
        key = (population_size, solution.tobytes())
        if key not in algorithms:
            algorithms[key] = CMA_ES(
                population_size=population_size, solution=jnp.asarray(solution)
            )
        return algorithms[key]

    def keep_std_init(strategy, previous_params):
        return strategy.default_params.replace(std_init=previous_params.std_init)

    controllers = {}

    def controller(solution):
        """The restart controller from ``solution`` and its jitted restart check."""
        if solution.tobytes() not in controllers:
            restarter = BIPOPRestart(
                lambda size: algorithm(size, solution),
                initial_population_size=4 + math.floor(3 * math.log(dimension)),
                stop_criteria=(spread_cond, cma_cond),
                strategy_params_factory=keep_std_init,
            )
            controllers[solution.tobytes()] = restarter, jax.jit(restarter.should_restart)
        return controllers[solution.tobytes()]

    def solve(problem: CountedProblem, x0, budget: int, seed: int) -> dict:
        solution = np.asarray(x0, np.float32)
        restarter, should_restart = controller(solution)
        es = algorithm(restarter.initial_population_size, solution)
        params = es.default_params.replace(std_init=jnp.asarray(SIGMA0, jnp.float32))
        key, init_key = jax.random.split(jax.random.key(seed))
        state = es.init(init_key, jnp.asarray(solution), params)
        restart_state = restarter.init(es)
        while not problem.solved and problem.evaluations + es.population_size <= budget:
            key, ask_key, tell_key, restart_key = jax.random.split(key, 4)
            population, state = es.ask(ask_key, state, params)
            fitness = [problem(x) for x in np.asarray(population, np.float64)]
            fitness = jnp.asarray(fitness, jnp.float32)
            state, _ = es.tell(tell_key, population, fitness, state, params)
            if should_restart(population, fitness, state, params, restart_state):
                es, params, state, restart_state = restarter.restart(
                    restart_key, es, state, params, restart_state
                )
        return {"restarts": int(restart_state.restart_counter)}

    return solve


SOLVERS = {
    "ours-cma": lambda d: ours_solver(d, "cma_es", "bipop"),
    "ours-sep": lambda d: ours_solver(d, "sep_cma_es", "ipop"),
    "pycma": pycma_solver,
    "evosax": evosax_solver,
}


# --------------------------------------------------------------------------------------
# A worker: one optimizer on every chosen problem of one dimension.
# --------------------------------------------------------------------------------------


def suite_options(dimension: int, functions, instances) -> str:
    return (
        f"dimensions: {dimension} function_indices: {','.join(map(str, functions))} "
        f"instance_indices: {','.join(map(str, instances))}"
    )


def run_unit(unit: dict) -> dict:
    """Runs ``unit`` (optimizer, dimension, functions, instances, budget multiplier, seed,
    workdir) in this process: one record per problem."""
    import cocoex

    name, d = unit["optimizer"], unit["dimension"]
    os.chdir(unit["workdir"])  # cocoex writes under ./exdata
    options = suite_options(d, unit["functions"], unit["instances"])
    suite = cocoex.Suite("bbob", "", options)
    unobserved = cocoex.Suite("bbob", "", options)
    observer = cocoex.Observer("bbob", f"result_folder: {name}/d{d:02d} algorithm_name: {name}")
    solve = SOLVERS[name](d)
    budget = unit["budget_multiplier"] * d
    records = []
    for index, raw in enumerate(suite):
        f_opt = optimal_value(raw)
        seed = problem_seed(unit["seed"], d, raw.id_function, raw.id_instance)
        check = unobserved.get_problem(raw.id)
        check_optimal_value(check, seed)
        check.free()
        x0 = raw.initial_solution
        raw.observe_with(observer)
        problem = CountedProblem(raw, f_opt + TARGET_PRECISION)
        start = time.perf_counter()
        details = solve(problem, x0, budget, seed)
        wall = time.perf_counter() - start
        record = {
            "optimizer": name,
            "dimension": d,
            "function": raw.id_function,
            "instance": raw.id_instance,
            "solved": problem.solved,
            "evaluations": problem.hit if problem.solved else problem.evaluations,
            "total_evaluations": problem.evaluations,
            "budget": budget,
            "best_precision": problem.best - f_opt,  # best f - f_opt
            "coco_target_hit": bool(raw.final_target_hit),
            "wall_s": round(wall, 3),
            "seed": seed,
            **details,
        }
        records.append(record)
        raw.free()
        outcome = "solved" if record["solved"] else f"best f-f_opt {record['best_precision']:.1e}"
        log(
            f"  [{name} {d}-D {index + 1}/{len(suite)}] f{record['function']} "
            f"i{record['instance']}: {outcome}, {record['evaluations']:,} evaluations, {wall:.1f} s"
        )
    return {"records": records}


def run_worker(unit: dict, timeout_s: float) -> dict:
    """``unit`` in a fresh single-threaded process whose progress lines go to our stderr;
    its result, or ``{"error": ...}``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(unit)]
    env = {**os.environ, **SINGLE_THREADED}
    try:
        proc = subprocess.run(
            command, stdout=subprocess.PIPE, text=True, timeout=timeout_s, env=env, cwd=_bench.ROOT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    result = _bench.result_in(proc.stdout)
    return result if result is not None else {"error": f"exit code {proc.returncode}"}


# --------------------------------------------------------------------------------------
# The whole run.
# --------------------------------------------------------------------------------------


def parse_ranges(text: str) -> list[int]:
    """``"1-5,7"`` -> ``[1, 2, 3, 4, 5, 7]``."""
    values = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        values.extend(range(int(low), int(high or low) + 1))
    return values


def skip_item(text: str) -> str:
    """``OPTIMIZER:D`` for ``--skip``, checked."""
    name, _, d = text.partition(":")
    if name not in OPTIMIZERS or not d.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected OPTIMIZER:D with OPTIMIZER in {list(OPTIMIZERS)}"
        )
    return f"{name}:{int(d)}"


def instances_per_dimension(specs: list[str], dimensions) -> dict[int, list[int]]:
    """``--instances`` items, ``N`` (instances 1..N for every dimension) or ``D:N``
    (for dimension D), as ``{dimension: [instances]}``."""
    default, per = 5, {}
    for spec in specs:
        if ":" in spec:
            d, n = spec.split(":")
            per[int(d)] = int(n)
        else:
            default = int(spec)
    return {d: list(range(1, per.get(d, default) + 1)) for d in dimensions}


def planned_units(args) -> list[dict]:
    """One unit per (optimizer, dimension), the largest dimensions first so that the two
    longest do not run last."""
    instances = instances_per_dimension(args.instances, args.dimensions)
    return [
        {
            "optimizer": name,
            "dimension": d,
            "functions": args.functions,
            "instances": instances[d],
            "budget_multiplier": args.budget_multiplier,
            "seed": args.seed,
            "workdir": str(args.workdir.resolve()),
        }
        for d in sorted(args.dimensions, reverse=True)
        for name in args.optimizers
        if f"{name}:{d}" not in args.skip
    ]


def measure_all(args, argv) -> dict:
    """Every unit, ``--jobs`` at a time; then cocopp's ECDF pictures unless ``--no-ecdf``."""
    shutil.rmtree(args.workdir / "exdata", ignore_errors=True)  # cocoex would not overwrite
    args.workdir.mkdir(parents=True, exist_ok=True)
    units = planned_units(args)
    start = time.perf_counter()

    def run(unit):
        log(f"[start] {unit['optimizer']} {unit['dimension']}-D ({elapsed(start)})")
        began = time.perf_counter()
        result = run_worker(unit, args.timeout)
        outcome = result.get("error") or f"{sum(r['solved'] for r in result['records'])} solved"
        log(f"[done] {unit['optimizer']} {unit['dimension']}-D: {outcome}, "
            f"{time.perf_counter() - began:.0f} s ({elapsed(start)})")  # fmt: skip
        return {**unit, "process_s": time.perf_counter() - began, **result}

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(run, units))
    records = [record for unit in done for record in unit.get("records", [])]
    errors = [
        f"{unit['optimizer']} {unit['dimension']}-D: {unit['error']}"
        for unit in done
        if "error" in unit
    ]
    instances = instances_per_dimension(args.instances, args.dimensions)
    meta = {
        "machine": f"{_bench.machine_description()}, load average {_bench.load_average()}",
        "software": f"{_bench.package_versions(VERSIONS_OF)}; {_bench.library_version()}",
        "date": _bench.today(),
        "command": _bench.reproduce_command(
            RUN_COMMAND,
            argv,
            output_options=(*_bench.OUTPUT_OPTIONS, "--workdir"),
            output_flags=("--no-ecdf",),
        ),
        "jobs": args.jobs,
        "budget_multiplier": args.budget_multiplier,
        "functions": args.functions,
        "instances": {str(d): instances[d] for d in args.dimensions},
        "optimizers": args.optimizers,
        "skipped": args.skip,
        "elapsed_s": time.perf_counter() - start,
        "process_s": {f"{u['optimizer']} {u['dimension']}": u["process_s"] for u in done},
        "errors": errors,
        "ecdf_images": [],
    }
    if not args.no_ecdf:
        meta["ecdf_images"] = ecdf_pictures(args)
    return {"meta": meta, "records": records}


def elapsed(start: float) -> str:
    return f"{(time.perf_counter() - start) / 60:.1f} min in"


def ecdf_pictures(args) -> list[str]:
    """cocopp on the observers' data of every optimizer (its output under ``--workdir``);
    its runtime ECDF over all functions of each of ``--ecdf-dimensions`` copied to
    ``docs/images/bbob_ecdf_<d>D.png``; the copied paths, relative to ``docs/``."""
    import matplotlib

    matplotlib.use("Agg")
    import cocopp

    output = args.workdir / "cocopp"
    shutil.rmtree(output, ignore_errors=True)
    cocopp.genericsettings.figure_file_formats = ["png"]
    folders = [str(args.workdir / "exdata" / name) for name in args.optimizers]
    log(f"[cocopp] {' '.join(folders)} -> {output}")
    cocopp.main(["-o", str(output), *folders])
    copied = []
    for d in args.ecdf_dimensions:
        found = sorted(output.glob(f"*/pprldmany_{d:02d}D_noiselessall.png"))
        if not found:
            log(f"[cocopp] no ECDF picture for {d}-D")
            continue
        IMAGES_DIR.mkdir(parents=True, exist_ok=True)
        target = IMAGES_DIR / f"bbob_ecdf_{d:02d}D.png"
        shutil.copyfile(found[0], target)
        copied.append(f"images/{target.name}")
    return copied


# --------------------------------------------------------------------------------------
# The section of docs/benchmarks.md.
# --------------------------------------------------------------------------------------


def by_problem(records) -> dict:
    """``{(optimizer, dimension, function, instance): record}``."""
    return {(r["optimizer"], r["dimension"], r["function"], r["instance"]): r for r in records}


def ratio_median(records, name: str, d: int) -> tuple[float | None, int]:
    """Median over the problems of dimension ``d`` that both ``name`` and pycma solve of
    evaluations(name) / evaluations(pycma), and how many such problems there are."""
    table = by_problem(records)
    ratios = [
        r["evaluations"] / table[(REFERENCE, *key)]["evaluations"]
        for (optimizer, *key), r in table.items()
        if optimizer == name and key[0] == d and r["solved"]
        if table.get((REFERENCE, *key), {}).get("solved")
    ]
    return (statistics.median(ratios) if ratios else None), len(ratios)


def present(records, field: str) -> list:
    return sorted({r[field] for r in records})


def solved_table(records, optimizers) -> str:
    dims = present(records, "dimension")
    header = "| optimizer | " + " | ".join(f"{d}-D" for d in dims) + " | all |"
    rows = [header, "|---|" + "---:|" * (len(dims) + 1)]
    for name in optimizers:
        cells = []
        for d in [*dims, None]:
            mine = [
                r for r in records if r["optimizer"] == name and (d is None or r["dimension"] == d)
            ]
            cells.append(f"{sum(r['solved'] for r in mine)}/{len(mine)}" if mine else "-")
        rows.append(f"| {OPTIMIZERS[name]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_table(records, optimizers) -> str:
    """Per dimension: each optimizer's median evaluation ratio to pycma, and whether ours
    meets the targets (solves at least pycma's count, median ratio <= 1.1)."""
    others = [name for name in optimizers if name != REFERENCE]
    header = (
        "| d | "
        + " | ".join(f"{OPTIMIZERS[name]} / pycma" for name in others)
        + " | targets (ours `cma_es`) |"
    )
    rows = [header, "|---:|" + "---:|" * len(others) + "---|"]
    for d in present(records, "dimension"):
        cells = []
        for name in others:
            median, count = ratio_median(records, name, d)
            cells.append("-" if median is None else f"{median:.2f} (on {count})")
        rows.append(f"| {d} | " + " | ".join(cells) + f" | {target_verdict(records, d)} |")
    return "\n".join(rows)


def target_verdict(records, d: int) -> str:
    def solved(name):
        return sum(r["solved"] for r in records if r["optimizer"] == name and r["dimension"] == d)

    ran = {r["optimizer"] for r in records if r["dimension"] == d}
    if not {OURS, REFERENCE} <= ran:
        return "-"
    median, _ = ratio_median(records, OURS, d)
    count_met = solved(OURS) >= solved(REFERENCE)
    ratio_met = median is not None and median <= 1.1
    parts = [
        f"solved {solved(OURS)} vs {solved(REFERENCE)}: {'met' if count_met else 'not met'}",
        f"ratio: {'met' if ratio_met else 'not met'}",
    ]
    return "; ".join(parts)


def wall_table(records, optimizers) -> str:
    rows = [
        "| optimizer | total wall time (min) | median per problem (s) | problems |",
        "|---|---:|---:|---:|",
    ]
    for name in optimizers:
        walls = [r["wall_s"] for r in records if r["optimizer"] == name]
        if walls:
            rows.append(
                f"| {OPTIMIZERS[name]} | {sum(walls) / 60:.1f} | "
                f"{statistics.median(walls):.2f} | {len(walls)} |"
            )
    return "\n".join(rows)


def losses(records, name: str = OURS) -> list[str]:
    """(function, dimension) pairs where ``name`` solves fewer instances than pycma, or
    needs over twice its evaluations (median over the instances both solve)."""
    table = by_problem(records)
    groups = collections.defaultdict(list)
    for (optimizer, d, function, instance), r in table.items():
        reference = table.get((REFERENCE, d, function, instance))
        if optimizer == name and reference is not None:
            groups[(function, d)].append((r, reference))
    lines = []
    for (function, d), pairs in sorted(groups.items()):
        ours = sum(r["solved"] for r, _ in pairs)
        theirs = sum(ref["solved"] for _, ref in pairs)
        ratios = [
            r["evaluations"] / ref["evaluations"]
            for r, ref in pairs
            if r["solved"] and ref["solved"]
        ]
        if ours < theirs:
            lines.append(f"f{function} in {d}-D: solved {ours} of {len(pairs)}, pycma {theirs}")
        elif ratios and statistics.median(ratios) > 2:
            lines.append(
                f"f{function} in {d}-D: {statistics.median(ratios):.1f}x pycma's evaluations "
                f"(median over {len(ratios)})"
            )
    return lines


def problems_description(meta) -> str:
    functions = meta["functions"]
    names = (
        "all 24 functions" if functions == list(FUNCTIONS) else "functions " + compact(functions)
    )
    per = [f"{d}-D: instances {compact(i)}" for d, i in meta["instances"].items()]
    skipped = collections.defaultdict(list)
    for item in meta.get("skipped", []):
        name, d = item.split(":")
        skipped[OPTIMIZERS[name]].append(f"{d}-D")
    not_run = "; ".join(f"{name} not run in {', '.join(dims)}" for name, dims in skipped.items())
    return f"{names}; " + ", ".join(per) + (f" ({not_run})" if not_run else "")


def compact(values) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3, 5``."""
    parts, run = [], []
    for value in sorted(values):
        if run and value != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(value)
    parts += [run] if run else []
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else f"{p[0]}" for p in parts)


def render(results: dict) -> str:
    meta, records = results["meta"], results["records"]
    optimizers = [name for name in OPTIMIZERS if name in meta["optimizers"]]
    text = _bench.prose("bbob")
    lost = losses(records) if {OURS, REFERENCE} <= set(optimizers) else []
    images = "\n\n".join(
        f"![Runtime ECDF, {Path(path).stem[-3:-1].lstrip('0')}-D]({path})"
        for path in meta["ecdf_images"]
    )
    errors = "".join(f"\n- failed: {error}" for error in meta["errors"])
    parts = [
        SECTION_TITLE,
        "",
        _bench.fill(
            text["header"],
            machine=meta["machine"],
            software=meta["software"],
            date=meta["date"],
            command=meta["command"],
            minutes=f"{meta['elapsed_s'] / 60:.0f}",
            jobs=meta["jobs"],
            problems=problems_description(meta),
            budget=f"{meta['budget_multiplier']:,}",
        )
        + errors,
        "",
        _bench.fill(text["solved"], table=solved_table(records, optimizers)),
        "",
        _bench.fill(text["ratios"], table=ratio_table(records, optimizers)),
        "",
        _bench.fill(
            text["losses"],
            losses="\n".join(f"- {line}" for line in lost) or "- none",
        ),
        "",
        _bench.fill(text["wall"], table=wall_table(records, optimizers)),
    ]
    if images:
        parts += ["", _bench.fill(text["ecdf"], images=images)]
    return "\n".join(parts) + "\n"


def results_json(results: dict) -> str:
    """``results`` as JSON with one meta field and one record per line."""
    meta = ",\n".join(
        f" {json.dumps(key)}: {json.dumps(value)}" for key, value in results["meta"].items()
    )
    records = ",\n".join(json.dumps(record) for record in results["records"])
    return f'{{"meta": {{\n{meta}\n}},\n"records": [\n{records}\n]}}\n'


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dimensions", type=int, nargs="+", default=list(DIMENSIONS))
    parser.add_argument(
        "--functions", type=parse_ranges, default=list(FUNCTIONS), help="e.g. 1-24 or 1,5,8"
    )
    parser.add_argument(
        "--instances",
        nargs="+",
        default=["5"],
        help="instances 1..N per dimension: N for all, D:N for dimension D (e.g. 5 20:2)",
    )
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS)
    )
    parser.add_argument(
        "--skip",
        type=skip_item,
        nargs="+",
        default=[],
        metavar="OPTIMIZER:D",
        help="optimizer and dimension not to run (e.g. evosax:20)",
    )
    parser.add_argument(
        "--budget-multiplier", type=int, default=10_000, help="evaluations per dimension"
    )
    parser.add_argument("--seed", type=int, default=1, help="base of the per-problem seeds")
    parser.add_argument("--jobs", type=int, default=2, help="processes at once")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=_bench.ROOT / "bench_out" / "bbob",
        help="cocoex and cocopp output (ignored by git)",
    )
    parser.add_argument("--ecdf-dimensions", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--no-ecdf", action="store_true", help="skip cocopp and its pictures")
    _bench.add_output_options(parser)
    args = parser.parse_args(argv)
    if args.worker:
        _bench.print_result(run_unit(json.loads(args.worker)))
        return 0
    if args.from_json is None:
        results = measure_all(args, argv)
    else:
        results = json.loads(args.from_json.read_text())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(results_json(results))
    output = args.output or _bench.BENCHMARKS_DOC
    _bench.write_section(output, SECTION_TITLE, render(results))
    log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
