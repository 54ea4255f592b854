"""Benchmark of the perturbed-function transform against optax, and of its accuracy.

Times the gradient of a smoothed objective f_sigma(x) = E f(x + sigma z) estimated from
``num_samples`` perturbed evaluations, for several dimensions ``d`` and two objectives
(``sum(x**2)`` and the non-smooth ``sum(|x|)``), in five configurations:

* ``optax``: ``jax.grad`` of ``optax.perturbations.make_perturbed_fun`` (Normal noise);
* ``grad``: ``jax.grad`` of ``es_toolkit.make_perturbed_fun``, antithetic and chunked;
* ``fast``: ``es_toolkit.make_perturbed_value_and_grad``, antithetic and chunked;
* ``dropin``: ``jax.grad`` of ``es_toolkit.make_perturbed_fun`` with every extension off;
* ``floor``: only drawing the noise the fast path needs and evaluating ``f`` on all
  members, chunked the same way: the lower bound for the fast path.

Each configuration runs in its own subprocess (this script with ``--worker JSON``), so
the peak resident memory reported is that configuration's, in ``--rounds`` passes over all
configurations (the lowest per-process median time is kept: other jobs only add time).
Configurations that hold every sample at once are reported as "does not fit" without
running when ``24 * num_samples * d`` bytes exceed ``--max-gb``. The ratios behind the
targets between our chunked functions are also timed side by side in one process, calls
interleaved, so that load from other jobs falls on each alike. A last table gives the
mean squared error of the gradient estimate of the sphere, whose exact smoothed gradient
is ``2 x``, for optax and our sampling options.

Usage::

    .venv/bin/python scripts/bench_perturb.py            # full run, writes docs/benchmarks.md
    .venv/bin/python scripts/bench_perturb.py --quick    # smoke test, prints the tables
    .venv/bin/python scripts/bench_perturb.py --json r.json       # also saves raw results
    .venv/bin/python scripts/bench_perturb.py --from-json r.json  # section from them again
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import _bench

SECTION_TITLE = "## Perturbed-function transform"
COMMAND = ".venv/bin/python scripts/bench_perturb.py"
KINDS = ("optax", "dropin", "grad", "fast", "floor")
KIND_LABELS = {
    "optax": "optax `jax.grad`",
    "dropin": "ours `jax.grad`, drop-in (no extensions)",
    "grad": "ours `jax.grad`, antithetic + chunked",
    "fast": "ours fast path, antithetic + chunked",
    "floor": "floor (noise + evaluations only)",
}
UNCHUNKED_KINDS = ("optax", "dropin")
SWEPT = ("fast", "grad")  # kinds compared across chunk sizes
INTERLEAVED = ("floor", "fast", "grad")  # kinds also timed side by side in one process
OBJECTIVES = {"sphere": "sum(x**2)", "abs": "sum(abs(x))"}
ACCURACY_OPTIONS = (
    # name, label, use_baseline, antithetic, orthogonal, implementation
    ("optax_baseline", "optax, baseline", True, False, False, "optax"),
    ("optax_no_baseline", "optax, no baseline", False, False, False, "optax"),
    ("ours_default", "ours, default (drop-in)", True, False, False, "ours"),
    ("ours_antithetic", "ours, antithetic", False, True, False, "ours"),
    ("ours_antithetic_orthogonal", "ours, antithetic + orthogonal", False, True, True, "ours"),
    ("ours_orthogonal", "ours, orthogonal", True, False, True, "ours"),
)
BYTES_PER_SAMPLE_ENTRY = 24  # optax's footprint per sample and coordinate (measured).
MB = 2**20


# --------------------------------------------------------------------------------------
# Worker side: runs one configuration in this process and prints one JSON result.
# --------------------------------------------------------------------------------------


def objective(name):
    import jax.numpy as jnp

    if name == "sphere":
        return lambda x: jnp.sum(x**2)
    if name == "abs":
        return lambda x: jnp.sum(jnp.abs(x))
    raise ValueError(f"unknown objective {name!r}")


def make_floor(fun, num_samples, sigma, chunk_size):
    """Noise for ``num_samples / 2`` directions and ``fun`` at all ``x +- sigma z``, summed.

    Direction ``j`` is drawn as the fast path draws it (``sampling.sample_directions``:
    ``optax.tree.random_like(fold_in(key, j), x, normal)``, through the fused Threefry
    where it applies); directions are visited ``chunk_size / 2`` at a time in a
    ``lax.scan``, as the fast path does.
    """
    import jax
    import jax.numpy as jnp

    from es_toolkit import Normal, sampling

    directions = num_samples // 2
    per_chunk = min(chunk_size // 2, directions)
    num_full, rest = divmod(directions, per_chunk)
    draws = sampling.make_sampling(num_samples, Normal(), antithetic=True)

    def floor(key, x):
        def chunk_total(start, count):
            z = sampling.sample_directions(draws, key, start, count, x)
            return jnp.sum(jax.vmap(fun)(x + sigma * z)) + jnp.sum(jax.vmap(fun)(x - sigma * z))

        def step(total, index):
            return total + chunk_total(index * per_chunk, per_chunk), None

        total, _ = jax.lax.scan(step, jnp.zeros((), x.dtype), jnp.arange(num_full))
        if rest:
            total = total + chunk_total(num_full * per_chunk, rest)
        return total

    return floor


def make_gradient_fn(kind, fun, num_samples, sigma, chunk_size):
    """The function timed for one configuration, ``fn(key, x)``."""
    import jax
    import optax

    import es_toolkit

    normal = es_toolkit.Normal()
    chunked = {"antithetic": True, "chunk_size": chunk_size}
    if kind == "optax":
        pert = optax.perturbations.make_perturbed_fun(
            fun, num_samples, sigma, optax.perturbations.Normal()
        )
        return jax.grad(pert, argnums=1)
    if kind == "dropin":
        return jax.grad(es_toolkit.make_perturbed_fun(fun, num_samples, sigma, normal), argnums=1)
    if kind == "grad":
        pert = es_toolkit.make_perturbed_fun(fun, num_samples, sigma, normal, **chunked)
        return jax.grad(pert, argnums=1)
    if kind == "fast":
        return es_toolkit.make_perturbed_value_and_grad(fun, num_samples, sigma, normal, **chunked)
    if kind == "floor":
        return make_floor(fun, num_samples, sigma, chunk_size)
    raise ValueError(f"unknown kind {kind!r}")


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB  # Linux: KiB.


def time_configuration(config):
    """Compile time, median time per call and peak memory of one configuration."""
    import jax

    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (config["d"],))
    jax.block_until_ready(x)
    rss_before = peak_rss_mb()
    fn = make_gradient_fn(
        config["kind"],
        objective(config["objective"]),
        config["num_samples"],
        config["sigma"],
        config["chunk_size"],
    )
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(key, x).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(key, x))  # warm-up call, not timed.
    times, cpu_times = [], []
    for _ in range(config["repeats"]):
        start, cpu_start = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(key, x))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    memory = compiled.memory_analysis()
    temp_mb = None if memory is None else memory.temp_size_in_bytes / MB
    return {
        "time_s": statistics.median(times),
        "times_s": times,
        "cpu_s": statistics.median(cpu_times),
        "cpu_times_s": cpu_times,
        "compile_s": compile_s,
        "peak_rss_mb": peak_rss_mb(),
        "base_rss_mb": rss_before,
        "xla_temp_mb": temp_mb,
    }


def time_interleaved(config):
    """Median time per call of several kinds compiled in one process, calls interleaved.

    Load from other jobs then falls on every kind alike, so the ratios between kinds are
    steadier than those between separate processes (which give the memory figures).
    """
    import jax

    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (config["d"],))
    fun = objective(config["objective"])
    compiled = {}
    for kind in config["kinds"]:
        args = (kind, fun, config["num_samples"], config["sigma"], config["chunk_size"])
        compiled[kind] = jax.jit(make_gradient_fn(*args)).lower(key, x).compile()
        jax.block_until_ready(compiled[kind](key, x))  # warm-up call, not timed.
    times = {kind: [] for kind in compiled}
    for _ in range(config["repeats"]):
        for kind, fn in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(key, x))
            times[kind].append(time.perf_counter() - start)
    return {"medians_s": {kind: statistics.median(t) for kind, t in times.items()}}


def make_accuracy_grad(option, num_samples):
    """Jitted ``grad(keys, x, sigma)`` of one accuracy option, vectorized over keys."""
    import jax
    import optax

    import es_toolkit

    _, _, use_baseline, antithetic, orthogonal, impl = option
    fun = objective("sphere")

    def grad(key, x, sigma):
        if impl == "optax":
            noise = optax.perturbations.Normal()
            pert = optax.perturbations.make_perturbed_fun(
                fun, num_samples, sigma, noise, use_baseline
            )
        else:
            extensions = {"antithetic": antithetic, "orthogonal": orthogonal}
            pert = es_toolkit.make_perturbed_fun(
                fun, num_samples, sigma, es_toolkit.Normal(), use_baseline, **extensions
            )
        return jax.grad(pert, argnums=1)(key, x)

    return jax.jit(jax.vmap(grad, in_axes=(0, None, None)))


def gradient_mse(config):
    """Gradient MSE against the exact ``2 x`` of the smoothed sphere, per option and sigma."""
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.key(123), (config["d"],))
    keys = jax.vmap(jax.random.key)(1000 + jnp.arange(config["num_keys"]))
    results, grads = {}, {}
    for option in ACCURACY_OPTIONS:
        name = option[0]
        grad = make_accuracy_grad(option, config["num_samples"])
        results[name] = {}
        for sigma in config["sigmas"]:
            grads[name, sigma] = grad(keys, x, jnp.float32(sigma))
            results[name][str(sigma)] = float(jnp.mean((grads[name, sigma] - 2 * x) ** 2))
    results["max_abs_diff_default_vs_optax"] = max(
        float(jnp.max(jnp.abs(grads["ours_default", s] - grads["optax_baseline", s])))
        for s in config["sigmas"]
    )
    return results


def run_worker(config):
    if config["kind"] == "accuracy":
        return gradient_mse(config)
    if config["kind"] == "interleaved":
        return time_interleaved(config)
    return time_configuration(config)


# --------------------------------------------------------------------------------------
# Driver side: runs every configuration in a subprocess, collects and formats results.
# --------------------------------------------------------------------------------------


def noise_bytes(config):
    return BYTES_PER_SAMPLE_ENTRY * config["num_samples"] * config["d"]


def make_config(kind, objective_name, d, num_samples, sigma, chunk_size, repeats):
    """One configuration to run in a worker process."""
    return {
        "kind": kind,
        "objective": objective_name,
        "d": d,
        "num_samples": num_samples,
        "sigma": sigma,
        "chunk_size": chunk_size,
        "repeats": repeats,
        "skip": False,
    }


def timing_configs(dims, num_samples, sigma, chunk_size, repeats, max_bytes):
    configs = []
    for objective_name in OBJECTIVES:
        for d in dims:
            for kind in KINDS:
                chunk = None if kind in UNCHUNKED_KINDS else chunk_size
                config = make_config(kind, objective_name, d, num_samples, sigma, chunk, repeats)
                config["skip"] = kind in UNCHUNKED_KINDS and noise_bytes(config) > max_bytes
                configs.append(config)
    return configs


def interleaved_configs(dims, num_samples, sigma, chunk_size, repeats):
    return [
        {
            **make_config(
                "interleaved", objective_name, d, num_samples, sigma, chunk_size, repeats
            ),
            "kinds": list(INTERLEAVED),
        }
        for objective_name in OBJECTIVES
        for d in dims
    ]


def chunk_sweep_configs(d, num_samples, sigma, chunk_sizes, repeats):
    return [
        make_config(kind, "sphere", d, num_samples, sigma, chunk, repeats)
        for chunk in chunk_sizes
        for kind in SWEPT
    ]


def run_subprocess(config, timeout_s, extra_env=None):
    """Runs one configuration in a fresh interpreter; returns its result or an error."""
    worker_config = {k: v for k, v in config.items() if k != "skip"}
    command = [sys.executable, __file__, "--worker", json.dumps(worker_config)]
    return _bench.run_for_result(command, timeout_s, extra_env)


def describe(config):
    chunk = "" if config["chunk_size"] is None else f" C={config['chunk_size']}"
    return f"{config['kind']:<6} {config['objective']:<6} d={config['d']:.0e}{chunk}"


def summarize(result):
    if "error" in result:
        return f"FAILED ({result['error']})"
    if "medians_s" in result:
        return ", ".join(f"{kind} {t:.4f} s" for kind, t in result["medians_s"].items())
    return (
        f"{result['time_s']:.4f} s/call, compile {result['compile_s']:.2f} s, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )


def merge_rounds(runs):
    """One result from several rounds: the lowest of the per-process medians.

    Other jobs on the machine only ever add time, so the least disturbed round is the
    best estimate of the configuration's own cost.
    """
    failed = [run for run in runs if "error" in run]
    if failed or len(runs) == 1:
        return (failed or runs)[0]
    return {
        "time_s": min(run["time_s"] for run in runs),
        "times_s": [t for run in runs for t in run["times_s"]],
        "cpu_s": min(run["cpu_s"] for run in runs),
        "cpu_times_s": [t for run in runs for t in run["cpu_times_s"]],
        "compile_s": statistics.median(run["compile_s"] for run in runs),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "base_rss_mb": max(run["base_rss_mb"] for run in runs),
        "xla_temp_mb": runs[0]["xla_temp_mb"],
    }


def run_all(configs, timeout_s, label, rounds=1):
    """Runs the configurations ``rounds`` times over, printing a line for each run.

    Rounds go through every configuration before repeating any, so that a slow spell of
    a shared machine does not fall on a single configuration.
    """
    started = time.perf_counter()
    runs = {id(config): [] for config in configs}
    for round_index in range(1, rounds + 1):
        for index, config in enumerate(configs, 1):
            prefix = f"[{label} {round_index}/{rounds}: {index}/{len(configs)}] {describe(config)}"
            if config["skip"]:
                if round_index == 1:
                    gigabytes = noise_bytes(config) / 1e9
                    print(f"{prefix}: does not fit (~{gigabytes:.0f} GB), skipped", flush=True)
                continue
            print(f"{prefix}: running ...", flush=True)
            config.setdefault("loads", []).append(os.getloadavg()[0])
            result = run_subprocess(config, timeout_s)
            runs[id(config)].append(result)
            elapsed = time.perf_counter() - started
            print(f"{prefix}: {summarize(result)} [{elapsed:.0f} s]", flush=True)
    for config in configs:
        config["result"] = {"skipped": True} if config["skip"] else merge_rounds(runs[id(config)])
    return configs


# --------------------------------------------------------------------------------------
# Markdown.
# --------------------------------------------------------------------------------------


def find(configs, **match):
    for config in configs:
        if all(config[k] == v for k, v in match.items()):
            return config["result"]
    return None


def ok(result):
    return result is not None and "time_s" in result


def fmt_time(result):
    if result is None:
        return "-"
    if result.get("skipped"):
        return "does not fit"
    if "error" in result:
        return "failed"
    return f"{result['time_s']:.3g}"


def fmt_cpu(result):
    return f"{result['cpu_s']:.3g}" if ok(result) else "-"


def fmt_compile(result):
    return f"{result['compile_s']:.2f}" if ok(result) else "-"


def fmt_memory(result, config):
    if result is not None and result.get("skipped"):
        return f"~{noise_bytes(config) / 1e9:.0f} GB (est.)"
    if not ok(result):
        return "-"
    return f"{result['peak_rss_mb']:.0f}"


def fmt_temp(result):
    if not ok(result) or result["xla_temp_mb"] is None:
        return "-"
    return f"{result['xla_temp_mb']:.0f}"


def ratio(numerator, denominator, field="time_s"):
    if not (ok(numerator) and ok(denominator)):
        return None
    return numerator[field] / denominator[field]


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def timing_table(configs, objective_name, dims):
    header = [
        "| d | configuration | chunk | time / call (s) | vs optax | CPU time / call (s) "
        "| compile (s) | peak RSS (MB) | XLA temp (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for d in dims:
        optax_result = find(configs, kind="optax", objective=objective_name, d=d)
        for kind in KINDS:
            config = next(
                c
                for c in configs
                if c["kind"] == kind and c["objective"] == objective_name and c["d"] == d
            )
            result = config["result"]
            chunk = "-" if config["chunk_size"] is None else str(config["chunk_size"])
            speedup = ratio(optax_result, result) if kind != "optax" else None
            rows.append(
                f"| {d:.0e} | {KIND_LABELS[kind]} | {chunk} | {fmt_time(result)} "
                f"| {fmt_ratio(speedup)} | {fmt_cpu(result)} | {fmt_compile(result)} "
                f"| {fmt_memory(result, config)} | {fmt_temp(result)} |"
            )
    return "\n".join(header + rows)


def chunk_table(sweep, timing, d):
    """Fast path and ``jax.grad`` at each chunk size, the main run's chunk included."""
    lines = [
        "| chunk | configuration | time / call (s) | peak RSS (MB) | XLA temp (MB) |",
        "|---:|---|---:|---:|---:|",
    ]
    main = [c for c in timing if c["objective"] == "sphere" and c["d"] == d and c["kind"] in SWEPT]
    for config in sorted(sweep + main, key=lambda c: (c["chunk_size"], c["kind"])):
        result = config["result"]
        lines.append(
            f"| {config['chunk_size']} | {KIND_LABELS[config['kind']]} | {fmt_time(result)} "
            f"| {fmt_memory(result, config)} | {fmt_temp(result)} |"
        )
    return "\n".join(lines)


def evaluations(option, num_samples):
    _, _, use_baseline, *_ = option
    return num_samples + 1 if use_baseline else num_samples


def accuracy_table(result, sigmas, num_samples):
    if "error" in result:
        return f"Accuracy run failed: {result['error']}"
    sigma_cols = " | ".join(f"MSE sigma={s:g} | ratio sigma={s:g}" for s in sigmas)
    lines = [
        f"| estimator | evaluations of f | {sigma_cols} |",
        "|---|---:|" + "---:|---:|" * len(sigmas),
    ]
    reference = result["optax_baseline"]
    for option in ACCURACY_OPTIONS:
        name, label = option[0], option[1]
        cells = []
        for sigma in sigmas:
            mse = result[name][str(sigma)]
            cells.append(f"{mse:.3g} | {mse / reference[str(sigma)]:.3g}")
        lines.append(f"| {label} | {evaluations(option, num_samples)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def side_ratio(side_by_side, objective_name, d, top, bottom):
    """Time ratio of two kinds timed side by side in one process."""
    for config in side_by_side:
        if config["objective"] == objective_name and config["d"] == d:
            medians = config["result"].get("medians_s")
            return None if medians is None else medians[top] / medians[bottom]
    return None


def verdict(value, passes):
    return "-" if value is None else f"{value:.2f}x {'met' if passes(value) else '**MISSED**'}"


def aside(label, value):
    return "" if value is None else f" ({label} {value:.2f}x)"


def memory_targets(configs, d, num_samples):
    lines = []
    for kind in ("fast", "grad"):
        result = find(configs, kind=kind, objective="sphere", d=d)
        memory = fmt_memory(result, {"num_samples": num_samples, "d": d})
        passed = "-" if not ok(result) else ("met" if result["peak_rss_mb"] < 1024 else "MISSED")
        lines.append(f"- {KIND_LABELS[kind]}, d={d:.0e}: peak RSS {memory} MB < 1024 MB: {passed}")
    return lines


def targets(configs, side_by_side, dims, num_samples):
    """The project's speed and memory targets, checked against the measurements.

    Ratios between our chunked kinds are judged side by side in one process (separate
    processes in parentheses); ratios to optax on the separate processes' wall times (CPU
    time in parentheses).
    """
    lines = [
        "| f | d | fast / floor (<= 1.5) | grad / fast (<= 2) | optax / grad (>= need) "
        "| optax / fast (>= need) | need |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for objective_name in OBJECTIVES:
        for d in dims:
            pieces = {k: find(configs, kind=k, objective=objective_name, d=d) for k in KINDS}
            need = 3.0 if objective_name == "sphere" and num_samples * d >= 1e7 else 1.0
            cells = []
            for top, bottom, passes in (
                ("fast", "floor", lambda r: r <= 1.5),
                ("grad", "fast", lambda r: r <= 2.0),
            ):
                together = side_ratio(side_by_side, objective_name, d, top, bottom)
                apart = ratio(pieces[top], pieces[bottom])
                cells.append(verdict(together, passes) + aside("separate", apart))
            for kind in ("grad", "fast"):
                wall = ratio(pieces["optax"], pieces[kind])
                cpu = ratio(pieces["optax"], pieces[kind], "cpu_s")
                cells.append(verdict(wall, lambda r, need=need: r >= need) + aside("CPU", cpu))
            lines.append(f"| {objective_name} | {d:.0e} | {' | '.join(cells)} | {need:g}x |")
    return "\n".join(lines)


def load_range(configs):
    loads = [load for config in configs for load in config.get("loads", [])]
    if not loads:
        return "load not recorded"
    return f"1-minute load average {min(loads):.1f} to {max(loads):.1f} during this run"


def run_metadata(argv, library):
    """Where and how a run happened, saved with its results."""
    return {
        "argv": argv,
        "machine": _bench.machine_description(),
        "versions": _bench.package_versions(("jax", "jaxlib", "optax")),
        "python": platform.python_version(),
        "library": library,
        "date": _bench.today(),
    }


def build_section(args, meta, timing, side_by_side, sweep, accuracy):
    text = _bench.prose("perturb")
    base = [c["result"]["base_rss_mb"] for c in timing if ok(c["result"])]
    parts = [
        SECTION_TITLE,
        "",
        _bench.fill(
            text["header"],
            **meta,
            command=_bench.reproduce_command(COMMAND, meta["argv"]),
            num_samples=args.num_samples,
            sigma=args.sigma,
            rounds=args.rounds,
            repeats=args.repeats,
            sweep_repeats=args.sweep_repeats,
            runtime=f"{min(base):.0f}-{max(base):.0f} MB" if base else "-",
            max_gb=f"{args.max_gb:g}",
            bytes_per_entry=BYTES_PER_SAMPLE_ENTRY,
            directions=args.num_samples // 2,
            load_range=load_range(timing),
        ),
    ]
    for objective_name, formula in OBJECTIVES.items():
        table = timing_table(timing, objective_name, args.dims)
        parts += ["", _bench.fill(text["objective"], formula=formula, table=table)]
    if sweep:
        table = chunk_table(sweep, timing, args.sweep_d)
        chunk_sweep = text["chunk_sweep"]
        d = f"{args.sweep_d:.0e}"
        parts += ["", _bench.fill(chunk_sweep, d=d, chunk_size=args.chunk_size, table=table)]
    parts += [
        "",
        _bench.fill(
            text["targets"],
            repeats=args.repeats,
            memory_targets="\n".join(memory_targets(timing, max(args.dims), args.num_samples)),
            table=targets(timing, side_by_side, args.dims, args.num_samples),
        ),
    ]
    if accuracy is not None:
        table = accuracy_table(accuracy, args.sigmas, args.num_samples)
        if "error" not in accuracy:
            difference = f"{accuracy['max_abs_diff_default_vs_optax']:.2g}"
            table += "\n\n" + _bench.fill(text["accuracy_difference"], difference=difference)
        parts += [
            "",
            _bench.fill(
                text["accuracy"],
                d=args.accuracy_d,
                num_samples=args.num_samples,
                keys=args.accuracy_keys,
                table=table,
            ),
        ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help="internal: run one JSON configuration and exit")
    parser.add_argument("--quick", action="store_true", help="small d only (smoke test)")
    parser.add_argument("--dims", type=float, nargs="+", help="dimensions d to time")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--chunk-size", type=int, default=20, help="samples per chunk (even)")
    parser.add_argument("--sweep-chunks", type=int, nargs="*", help="chunk sizes to compare")
    parser.add_argument("--sweep-d", type=float, default=1e6)
    parser.add_argument("--repeats", type=int, help="timed calls per configuration and round")
    parser.add_argument("--rounds", type=int, help="passes over the timing configurations")
    parser.add_argument("--sweep-repeats", type=int, help="timed calls in the chunk table")
    parser.add_argument("--max-gb", type=float, default=16.0, help="skip unchunked above this")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    parser.add_argument("--accuracy-keys", type=int)
    parser.add_argument("--accuracy-d", type=int, default=100)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    _bench.add_output_options(parser)
    args = parser.parse_args(argv)
    quick = args.quick
    args.dims = [int(d) for d in (args.dims or ([1e3] if quick else [1e3, 1e4, 1e5, 1e6]))]
    args.sweep_d = int(args.sweep_d)
    if args.sweep_chunks is None:
        args.sweep_chunks = [] if quick else [10, 40, 100]
    args.repeats = args.repeats or (2 if quick else 5)
    args.sweep_repeats = args.sweep_repeats or min(args.repeats, 3)
    args.rounds = args.rounds or (1 if quick else 2)
    args.accuracy_keys = args.accuracy_keys or (3 if quick else 20)
    if args.output is None and not quick:
        args.output = _bench.BENCHMARKS_DOC
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        _bench.print_result(run_worker(json.loads(args.worker)))
        return
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        run_args = parse_args(saved["meta"]["argv"])
        results = [saved[name] for name in ("timing", "side_by_side", "sweep", "accuracy")]
        report(args.output, build_section(run_args, saved["meta"], *results))
        return
    library = _bench.library_version()  # before the run, which may take an hour
    max_bytes = args.max_gb * 1e9
    timing = timing_configs(
        args.dims, args.num_samples, args.sigma, args.chunk_size, args.repeats, max_bytes
    )
    run_all(timing, args.timeout, "timing", args.rounds)
    side_by_side = interleaved_configs(
        args.dims, args.num_samples, args.sigma, args.chunk_size, args.repeats
    )
    run_all(side_by_side, args.timeout, "interleaved")
    chunks = [c for c in args.sweep_chunks if c != args.chunk_size or args.sweep_d not in args.dims]
    sweep = chunk_sweep_configs(
        args.sweep_d, args.num_samples, args.sigma, chunks, args.sweep_repeats
    )
    run_all(sweep, args.timeout, "chunk")
    print(f"[accuracy] sphere d={args.accuracy_d}, {args.accuracy_keys} keys ...", flush=True)
    accuracy_config = {
        "kind": "accuracy",
        "d": args.accuracy_d,
        "num_samples": args.num_samples,
        "num_keys": args.accuracy_keys,
        "sigmas": args.sigmas,
    }
    # Not timed. One BLAS thread: multithreaded QR (orthogonal=True) crawls on a busy machine.
    accuracy = run_subprocess(accuracy_config, args.timeout, {"OPENBLAS_NUM_THREADS": "1"})
    print(f"[accuracy] {'FAILED ' + accuracy['error'] if 'error' in accuracy else 'done'}")
    meta = run_metadata(argv, library)
    if args.json:
        results = {"timing": timing, "side_by_side": side_by_side, "sweep": sweep}
        payload = {"meta": meta, **results, "accuracy": accuracy}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    report(args.output, build_section(args, meta, timing, side_by_side, sweep, accuracy))


def report(output, section):
    if output is None:
        print(section)
    else:
        _bench.write_section(output, SECTION_TITLE, section)
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
