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
the peak resident memory reported is that configuration's. Configurations whose noise
alone would not fit in memory (``24 * num_samples * d`` bytes over ``--max-bytes``) are
reported as "does not fit" without running. A second table gives the mean squared error
of the gradient estimate of the sphere, whose exact smoothed gradient is ``2 x``.

Usage::

    .venv/bin/python scripts/bench_perturb.py            # full run, writes docs/benchmarks.md
    .venv/bin/python scripts/bench_perturb.py --quick    # smoke test, prints the tables
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

SECTION_TITLE = "## Perturbed-function transform"
DOC_INTRO = """# Benchmarks

Speed, memory and accuracy measurements of `es_toolkit`, each produced by a script in
`scripts/` that rewrites its own section of this file.
"""
RESULT_PREFIX = "BENCH_RESULT "
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

    Direction ``j`` is ``normal(fold_in(key, j), (d,))``; directions are visited
    ``chunk_size / 2`` at a time in a ``lax.scan``, as the fast path does.
    """
    import jax
    import jax.numpy as jnp

    directions = num_samples // 2
    per_chunk = min(chunk_size // 2, directions)
    num_full, rest = divmod(directions, per_chunk)

    def floor(key, x):
        def chunk_total(start, count):
            indices = start + jnp.arange(count)
            z = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j), x.shape, x.dtype))(
                indices
            )
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
    times = []
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        jax.block_until_ready(compiled(key, x))
        times.append(time.perf_counter() - start)
    memory = compiled.memory_analysis()
    temp_mb = None if memory is None else memory.temp_size_in_bytes / MB
    return {
        "time_s": statistics.median(times),
        "times_s": times,
        "compile_s": compile_s,
        "peak_rss_mb": peak_rss_mb(),
        "base_rss_mb": rss_before,
        "xla_temp_mb": temp_mb,
    }


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
    return time_configuration(config)


# --------------------------------------------------------------------------------------
# Driver side: runs every configuration in a subprocess, collects and formats results.
# --------------------------------------------------------------------------------------


def noise_bytes(config):
    return BYTES_PER_SAMPLE_ENTRY * config["num_samples"] * config["d"]


def timing_configs(dims, num_samples, sigma, chunk_size, repeats, max_bytes):
    configs = []
    for objective_name in OBJECTIVES:
        for d in dims:
            for kind in KINDS:
                config = {
                    "kind": kind,
                    "objective": objective_name,
                    "d": d,
                    "num_samples": num_samples,
                    "sigma": sigma,
                    "chunk_size": None if kind in UNCHUNKED_KINDS else chunk_size,
                    "repeats": repeats,
                }
                config["skip"] = kind in UNCHUNKED_KINDS and noise_bytes(config) > max_bytes
                configs.append(config)
    return configs


def chunk_sweep_configs(d, num_samples, sigma, chunk_sizes, repeats):
    return [
        {
            "kind": kind,
            "objective": "sphere",
            "d": d,
            "num_samples": num_samples,
            "sigma": sigma,
            "chunk_size": chunk,
            "repeats": repeats,
            "skip": False,
        }
        for chunk in chunk_sizes
        for kind in SWEPT
    ]


def run_subprocess(config, timeout_s, extra_env=None):
    """Runs one configuration in a fresh interpreter; returns its result or an error."""
    worker_config = {k: v for k, v in config.items() if k != "skip"}
    command = [sys.executable, __file__, "--worker", json.dumps(worker_config)]
    env = {**os.environ, **(extra_env or {})}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return {"error": f"exit code {proc.returncode}: {tail[0][:200]}"}


def describe(config):
    chunk = "" if config["chunk_size"] is None else f" C={config['chunk_size']}"
    return f"{config['kind']:<6} {config['objective']:<6} d={config['d']:.0e}{chunk}"


def summarize(result):
    if "error" in result:
        return f"FAILED ({result['error']})"
    return (
        f"{result['time_s']:.4f} s/call, compile {result['compile_s']:.2f} s, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )


def run_all(configs, timeout_s, label):
    """Runs the configurations one after the other, printing a line for each."""
    started = time.perf_counter()
    for index, config in enumerate(configs, 1):
        prefix = f"[{label} {index}/{len(configs)}] {describe(config)}"
        if config["skip"]:
            config["result"] = {"skipped": True}
            gigabytes = noise_bytes(config) / 1e9
            print(f"{prefix}: does not fit (~{gigabytes:.0f} GB), skipped", flush=True)
            continue
        print(f"{prefix}: running ...", flush=True)
        config["result"] = run_subprocess(config, timeout_s)
        elapsed = time.perf_counter() - started
        print(f"{prefix}: {summarize(config['result'])} [{elapsed:.0f} s]", flush=True)
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


def ratio(numerator, denominator):
    if not (ok(numerator) and ok(denominator)):
        return None
    return numerator["time_s"] / denominator["time_s"]


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def timing_table(configs, objective_name, dims):
    header = [
        "| d | configuration | chunk | time / call (s) | vs optax | compile (s) "
        "| peak RSS (MB) | XLA temp (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
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
                f"| {fmt_ratio(speedup)} | {fmt_compile(result)} "
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
    difference = result["max_abs_diff_default_vs_optax"]
    lines += [
        "",
        f"Ours with default options vs optax, same keys: largest absolute difference between "
        f"gradient entries {difference:.2g}.",
    ]
    return "\n".join(lines)


def mark(value, passed):
    if value is None:
        return "-"
    return f"{value:.2f}x {'met' if passed else '**MISSED**'}"


def memory_targets(configs, d, num_samples):
    lines = []
    for kind in ("fast", "grad"):
        result = find(configs, kind=kind, objective="sphere", d=d)
        memory = fmt_memory(result, {"num_samples": num_samples, "d": d})
        verdict = "-" if not ok(result) else ("met" if result["peak_rss_mb"] < 1024 else "MISSED")
        lines.append(f"- {KIND_LABELS[kind]}, d={d:.0e}: peak RSS {memory} MB < 1024 MB: {verdict}")
    return lines


def targets(configs, dims, num_samples):
    """The project's speed and memory targets, checked against the measurements."""
    lines = [
        *memory_targets(configs, max(dims), num_samples),
        "",
        "| f | d | fast / floor (<= 1.5) | grad / fast (<= 2) | optax / grad (>= need) "
        "| optax / fast (>= need) | need |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for objective_name in OBJECTIVES:
        for d in dims:
            pieces = {k: find(configs, kind=k, objective=objective_name, d=d) for k in KINDS}
            fast_floor = ratio(pieces["fast"], pieces["floor"])
            grad_fast = ratio(pieces["grad"], pieces["fast"])
            need = 3.0 if objective_name == "sphere" and num_samples * d >= 1e7 else 1.0
            speedups = [ratio(pieces["optax"], pieces[k]) for k in ("grad", "fast")]
            cells = [
                mark(fast_floor, fast_floor is not None and fast_floor <= 1.5),
                mark(grad_fast, grad_fast is not None and grad_fast <= 2.0),
                *(mark(s, s is not None and s >= need) for s in speedups),
            ]
            lines.append(f"| {objective_name} | {d:.0e} | {' | '.join(cells)} | {need:g}x |")
    return "\n".join(lines)


def machine_description():
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        if match:
            model = match.group(1).strip()
    return f"{os.cpu_count()}-core CPU ({model}), {platform.system()}"


def build_section(args, timing, sweep, accuracy, command):
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("jax", "jaxlib", "optax")
    )
    today = datetime.date.today().isoformat()
    parts = [
        SECTION_TITLE,
        "",
        f"Machine: {machine_description()}; {versions}; Python {platform.python_version()}; "
        f"{today}. Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        f"Gradient of f_sigma at a random x, num_samples={args.num_samples}, "
        f"sigma={args.sigma}, "
        f"Normal noise, baseline on (optax's default). Each configuration runs in its own "
        f"process: the time is the median of {args.repeats} calls of the jitted function "
        "after a warm-up call (`block_until_ready`), the compile time is that of "
        "`jit(fn).lower(key, x).compile()`, the peak RSS is `ru_maxrss` of that process "
        "(it includes about 150-300 MB for the Python interpreter and JAX runtime) and XLA "
        "temp is the compiled program's scratch buffer size from `memory_analysis()`. "
        "\"vs optax\" is optax's time divided by the row's (higher is faster). optax and the "
        f"drop-in mode hold all samples at once; they are skipped above {args.max_gb:g} GB of "
        f"estimated memory ({BYTES_PER_SAMPLE_ENTRY} bytes x num_samples x d). The floor "
        "draws the 500 directions the antithetic fast path needs "
        "(`normal(fold_in(key, j), (d,))`), chunked identically in a `lax.scan`, and "
        "evaluates f at all 1000 points x +- sigma z, summing the values: no estimator work "
        "at all. The machine was shared with other jobs while this ran, so timings are noisy.",
    ]
    for objective_name, formula in OBJECTIVES.items():
        parts += ["", f"### f(x) = {formula}", "", timing_table(timing, objective_name, args.dims)]
    if sweep:
        parts += [
            "",
            f"### Chunk size at d={args.sweep_d:.0e} (f = sum(x**2))",
            "",
            f"Chosen chunk: {args.chunk_size} samples.",
            "",
            chunk_table(sweep, timing, args.sweep_d),
        ]
    parts += ["", "### Targets", "", targets(timing, args.dims, args.num_samples)]
    if accuracy is not None:
        parts += [
            "",
            f"### Accuracy: gradient MSE on the sphere (d={args.accuracy_d})",
            "",
            f"f(x) = sum(x**2), whose Gaussian-smoothed gradient is exactly 2x; x = "
            f"normal(key(123), ({args.accuracy_d},)); num_samples={args.num_samples}; MSE = "
            f"mean over {args.accuracy_keys} keys of mean((ĝ - 2x)²). Ratio = MSE / MSE of "
            "optax with baseline (lower is better). The baseline f(x) costs one extra "
            "evaluation, so the rows with a baseline use num_samples + 1 evaluations; "
            "antithetic rows run without it, since a mirrored pair cancels any baseline "
            "exactly. Orthogonal directions are orthogonal within blocks of min(d, number of "
            "directions) = d here.",
            "",
            accuracy_table(accuracy, args.sigmas, args.num_samples),
        ]
    return "\n".join(parts) + "\n"


def write_section(path, section):
    """Writes ``section`` into ``path``, replacing an earlier version of it if present."""
    text = path.read_text() if path.exists() else DOC_INTRO
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


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
    parser.add_argument("--repeats", type=int, help="timed calls per configuration")
    parser.add_argument("--max-gb", type=float, default=16.0, help="skip unchunked above this")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    parser.add_argument("--accuracy-keys", type=int)
    parser.add_argument("--accuracy-d", type=int, default=100)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--output", type=Path, help="markdown file to update")
    args = parser.parse_args(argv)
    quick = args.quick
    args.dims = [int(d) for d in (args.dims or ([1e3] if quick else [1e3, 1e4, 1e5, 1e6]))]
    args.sweep_d = int(args.sweep_d)
    if args.sweep_chunks is None:
        args.sweep_chunks = [] if quick else [10, 40, 100]
    args.repeats = args.repeats or (2 if quick else 5)
    args.accuracy_keys = args.accuracy_keys or (3 if quick else 20)
    if args.output is None and not quick:
        args.output = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    return args


def reproduce_command(argv):
    return " ".join([".venv/bin/python", "scripts/bench_perturb.py", *argv])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        result = run_worker(json.loads(args.worker))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    max_bytes = args.max_gb * 1e9
    timing = timing_configs(
        args.dims, args.num_samples, args.sigma, args.chunk_size, args.repeats, max_bytes
    )
    run_all(timing, args.timeout, "timing")
    chunks = [c for c in args.sweep_chunks if c != args.chunk_size or args.sweep_d not in args.dims]
    sweep = chunk_sweep_configs(args.sweep_d, args.num_samples, args.sigma, chunks, args.repeats)
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
    section = build_section(args, timing, sweep, accuracy, reproduce_command(argv))
    if args.output is None:
        print(section)
    else:
        write_section(args.output, section)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
