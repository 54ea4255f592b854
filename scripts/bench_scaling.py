"""Generations per second against devices and processes, and bytes moved between devices.

* **Devices**: one process with ``n`` forced CPU devices (``XLA_FLAGS=
  --xla_force_host_platform_device_count=n``), the population sharded over them with
  ``minimize(..., mesh=n)`` or ``TrainConfig(devices=n)``.
* **Processes**: ``p`` processes joined with ``jax.distributed`` on this machine, each
  pinned to its own core (``taskset``) with one device, against one process pinned to one
  core. Target on a 2-core machine: 2 processes reach at least 1.6x the generations per
  second of 1 (80% scaling efficiency) on the compute-bound objective.
* **Workloads**: a compute-bound objective (the mean squared error of a 8-64-64-1 tanh MLP,
  4,801 parameters, on 2,048 fixed points; population 1,024, OpenAI-ES), and CartPole-v1
  training (population 256, OpenAI-ES, linear policy, one episode per member).
* **Bytes moved**: the collectives of the compiled sharded generation
  (``es_toolkit._hlo.collectives``) at 4 devices, against d and the population, next to the size
  of the population matrix that an implementation gathering the members would move.

Each timing is the median of 3 runs of a jitted block of generations after compilation.
Pinned processes run XLA single-threaded (``--xla_cpu_multi_thread_eigen=false``), one
core each, in the one-process and the two-process runs alike.

Usage::

    .venv/bin/python scripts/bench_scaling.py           # full run, writes docs/benchmarks.md
    .venv/bin/python scripts/bench_scaling.py --quick   # smoke test, prints the tables
    # redraw an accelerator check's picture and rewrite its subsection, measuring nothing:
    .venv/bin/python scripts/bench_scaling.py --from-json docs/results/accelerator-h200.json
"""

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _bench
import _plots

SECTION_TITLE = "## Scaling over devices and processes"
TARGET_SPEEDUP = 1.6
MLP_POPULATION = 1024
WORKLOAD_NAMES = {
    "mlp": "MLP regression, d = 4,801, population 1,024",
    "cartpole": "CartPole-v1 training, population 256",
}


def mlp_objective():
    import jax
    import jax.numpy as jnp

    inputs = jax.random.normal(jax.random.key(0), (2048, 8))
    targets = jnp.sin(inputs.sum(axis=1, keepdims=True))
    sizes = [(8, 64), (64, 64), (64, 1)]
    d = sum(a * b + b for a, b in sizes)

    def loss(flat):
        x, offset = inputs, 0
        for i, (a, b) in enumerate(sizes):
            w = flat[offset : offset + a * b].reshape(a, b)
            bias = flat[offset + a * b : offset + a * b + b]
            offset += a * b + b
            x = x @ w + bias
            x = jnp.tanh(x) if i < len(sizes) - 1 else x
        return jnp.mean((x - targets) ** 2)

    return loss, d


def time_workload(workload: str, mesh, generations: int, population: int = 256) -> float:
    """Generations per second (median of 3 timed blocks after a warm-up)."""
    import jax
    import jax.numpy as jnp

    from es_toolkit import minimize
    from es_toolkit.strategies import open_es

    if workload == "mlp":
        loss, d = mlp_objective()
        x0 = 0.1 * jax.random.normal(jax.random.key(1), (d,))
        options = {"strategy": open_es(population, sigma=0.05), "num_generations": generations,
                   "block_size": generations, "progress": False, "mesh": mesh}  # fmt: skip
        minimize(loss, x0, **options)
        rates = []
        for seed in range(3):
            start = time.perf_counter()
            result = minimize(loss, x0, key=jax.random.key(seed), **options)
            jnp.asarray(result.best_value).block_until_ready()
            rates.append(generations / (time.perf_counter() - start))
        return statistics.median(rates)
    from es_toolkit.training import TrainConfig, open_backend, state

    config = TrainConfig(
        population_size=population, num_generations=generations, eval_every=generations,
        eval_episodes=1, sigma=0.1, learning_rate=0.05,
        devices=None if mesh is None else int(mesh),
    )  # fmt: skip
    backend = open_backend(config)
    block = backend.block(generations)
    initial = state.init_state(config, backend.policy, backend.strategy, backend.observation_shape)
    jax.block_until_ready(block(initial))
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(block(initial))
        rates.append(generations / (time.perf_counter() - start))
    return statistics.median(rates)


def worker(args) -> None:
    """Runs inside a subprocess: prints one JSON line of results."""
    import jax

    jax.config.update("jax_platforms", args.platform)
    if args.num_processes > 1:
        from es_toolkit import parallel

        parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    mesh = jax.device_count() if (args.num_processes > 1 or args.devices > 1) else None
    population = MLP_POPULATION if args.workload == "mlp" else 256
    rate = time_workload(args.workload, mesh, args.generations, population)
    if jax.process_index() == 0:
        _bench.print_result({"rate": rate, "devices": jax.device_count()})


def run_worker(workload, devices=1, processes=1, generations=20, pin=False) -> float:
    """Generations per second from fresh processes (pinned one per core with ``pin``)."""
    flags = f"--xla_force_host_platform_device_count={devices}"
    if pin:  # one core per process: XLA's own thread pool would only contend for it
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env = {**os.environ, "XLA_FLAGS": flags}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    procs = []
    for i in range(processes):
        command = [sys.executable, __file__, "--worker", workload, "--devices", str(devices),
                   "--generations", str(generations), "--num-processes", str(processes),
                   "--process-id", str(i), "--coordinator", address]  # fmt: skip
        if pin and shutil.which("taskset"):
            command = ["taskset", "-c", str(i), *command]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env))
    outputs = [proc.communicate(timeout=1800)[0] for proc in procs]
    for proc in procs:
        if proc.returncode:
            raise RuntimeError(f"worker failed with exit code {proc.returncode}")
    results = [_bench.result_in(output) for output in outputs]
    return next(result for result in results if result is not None)["rate"]


def accelerator_check(path: str) -> None:
    """On the default platform (a GPU machine): generations per second unsharded and
    sharded over every local device, and the largest difference between the two runs'
    results. Writes JSON to ``path``."""
    import jax
    import jax.numpy as jnp

    from es_toolkit import minimize
    from es_toolkit.strategies import open_es

    count = jax.local_device_count()
    rows = []
    for workload, population, generations in (
        ("mlp", 256, 50), ("mlp", 4096, 50), ("cartpole", 256, 20), ("cartpole", 4096, 20)
    ):  # fmt: skip
        rates = [time_workload(workload, mesh, generations, population) for mesh in (None, count)]
        rows.append({"workload": workload, "population": population, "rates": rates})
        print(rows[-1], flush=True)
    loss, d = mlp_objective()
    x0 = 0.1 * jax.random.normal(jax.random.key(1), (d,))
    runs = [
        minimize(loss, x0, strategy=open_es(256, sigma=0.05), num_generations=20,
                 progress=False, mesh=mesh).state.mean
        for mesh in (None, count)
    ]  # fmt: skip
    result = {
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.devices()[0].platform,
        "count": count,
        "jax": jax.__version__,
        "rows": rows,
        "max_abs_difference": float(jnp.max(jnp.abs(runs[0] - runs[1]))),
    }
    Path(path).write_text(json.dumps(result, indent=1))
    print(json.dumps(result), flush=True)
    plot_accelerator(result, _plots.image_path(_bench.BENCHMARKS_DOC, accelerator_image(path)))


ACCELERATOR_NAMES = {"mlp": "MLP regression, d = 4,801", "cartpole": "CartPole-v1 training"}


def accelerator_image(path: Path) -> str:
    """The picture of the accelerator results in ``path``, named after it:
    ``accelerator-h200.json`` draws ``accelerator_h200.png``."""
    return Path(path).stem.replace("-", "_") + ".png"


def plot_accelerator(result: dict, path: Path) -> None:
    """Generations per second of each workload and population, unsharded and sharded
    over every local device."""
    plt = _plots.pyplot()
    rows = result["rows"]
    groups = [f"{ACCELERATOR_NAMES[row['workload']]}\npopulation {row['population']:,}"
              for row in rows]  # fmt: skip
    devices = f"{result['count']} device" + ("s" if result["count"] > 1 else "")
    series = [
        ("unsharded", _plots.OURS_VARIANT, [row["rates"][0] for row in rows]),
        (f"sharded over {devices}", _plots.OURS, [row["rates"][1] for row in rows]),
    ]
    figure, axes = plt.subplots(figsize=(8, 4.2))
    _plots.grouped_bars(axes, groups, series)
    axes.tick_params(axis="x", labelsize=8)
    axes.yaxis.set_major_formatter("{x:,.0f}")
    axes.set_ylabel("generations per second (higher is better)")
    axes.set_title(f"OpenAI-ES on {result['count']} x {result['device']} (jax {result['jax']})")
    axes.legend(loc="upper right")
    _plots.save(figure, path)


def accelerator_text(text: dict[str, str], path: Path) -> str:
    result = json.loads(path.read_text())
    names = ACCELERATOR_NAMES
    lines = [
        f"| workload | population | unsharded | sharded over {result['count']} device(s) |",
        "|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        unsharded, sharded = row["rates"]
        lines.append(
            f"| {names[row['workload']]} | {row['population']:,} | {unsharded:.1f} | "
            f"{sharded:.1f} |"
        )
    return _bench.fill(
        text["accelerator"],
        count=result["count"],
        device=result["device"],
        jax=result["jax"],
        table="\n".join(lines),
        difference=f"{result['max_abs_difference']:.1e}",
        image=accelerator_image(path),
    )


def draw_accelerator(results: Path, markdown: Path) -> None:
    """The picture of the accelerator results in ``results``, in ``images/`` next to
    ``markdown``."""
    image = _plots.image_path(markdown, accelerator_image(results))
    plot_accelerator(json.loads(Path(results).read_text()), image)


def section_in(doc: Path) -> str:
    """This script's section of ``doc`` as it stands."""
    text = doc.read_text() if doc.exists() else ""
    start = text.find(SECTION_TITLE + "\n")
    if start < 0:
        raise SystemExit(f"{doc} has no section {SECTION_TITLE!r}: run the benchmark first.")
    end = text.find("\n## ", start)
    return text[start : len(text) if end < 0 else end + 1]


def with_subsection(section: str, heading: str, subsection: str, before: str) -> str:
    """``section`` with its subsection starting with ``heading`` replaced by
    ``subsection``; where it has none, ``subsection`` goes before the line ``before`` (at
    the end if there is no such line)."""
    start = section.find(heading)
    if start >= 0:
        end = section.find("\n### ", start)
        end = len(section) if end < 0 else end + 1
    else:
        start = end = section.find(before) if before in section else len(section)
    return section[:start] + subsection.rstrip("\n") + "\n\n" + section[end:].lstrip("\n")


def rewrite_accelerator(doc: Path, results: Path) -> None:
    """Redraws the picture of ``results`` and rewrites the accelerator subsection of this
    script's section of ``doc`` from them; the rest of the section stays as it is."""
    text = _bench.prose("scaling")
    draw_accelerator(results, doc)
    heading = text["accelerator"].split("{", 1)[0]  # the heading up to its first value
    bytes_heading = text["bytes"].splitlines()[0]
    subsection = accelerator_text(text, results)
    section = with_subsection(section_in(doc), heading, subsection, bytes_heading)
    _bench.write_section(doc, SECTION_TITLE, section)
    print(f"wrote the accelerator subsection of {doc}")


def bytes_moved(d: int, population: int, devices: int = 4) -> tuple[int, list]:
    import jax
    import jax.numpy as jnp

    from es_toolkit import _hlo, parallel
    from es_toolkit.strategies import base, open_es

    strategy = open_es(population, sigma=0.1)
    state = strategy.init(jnp.zeros(d))

    def generation(key, state):
        return base.evaluate_and_tell(strategy, key, state, lambda x: -jnp.sum(x**2))[:2]

    compiled = jax.jit(parallel.shard(generation, devices)).lower(jax.random.key(0), state)
    found = _hlo.collectives(compiled.compile())
    return sum(c.bytes for c in found), found


def generations_text(text: dict[str, str], quick: bool) -> str:
    """Generations per second over forced devices and pinned processes, and the target."""
    generations = 2 if quick else 10
    lines = [
        "| workload | 1 device | 2 devices | 4 devices | 1 process, 1 core | "
        "2 processes, 1 core each | speedup |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    speedups = {}
    for workload, name in WORKLOAD_NAMES.items():
        by_devices = [run_worker(workload, devices=n, generations=generations) for n in (1, 2, 4)]
        one = run_worker(workload, generations=generations, pin=True)
        two = run_worker(workload, processes=2, generations=generations, pin=True)
        speedups[workload] = two / one
        lines.append(
            f"| {name} | " + " | ".join(f"{r:.1f}" for r in by_devices)
            + f" | {one:.1f} | {two:.1f} | {two / one:.2f}x |"
        )  # fmt: skip
        print(lines[-1], flush=True)
    return _bench.fill(
        text["generations"],
        table="\n".join(lines),
        target=TARGET_SPEEDUP,
        speedup=f"{speedups['mlp']:.2f}x",
        verdict="met" if speedups["mlp"] >= TARGET_SPEEDUP else "missed",
    )


def bytes_text(text: dict[str, str], quick: bool) -> str:
    lines = [
        "| d | population | collectives (per device) | bytes | population matrix |",
        "|---:|---:|---|---:|---:|",
    ]
    for d in (1_000, 100_000) if quick else (1_000, 10_000, 100_000):
        for population in (256, 4096):
            total, found = bytes_moved(d, population)
            ops = ", ".join(f"{c.op} {'x'.join(map(str, c.shapes[0]))}" for c in found)
            lines.append(f"| {d:,} | {population:,} | {ops} | {total:,} | {population * d * 4:,} |")
            print(lines[-1], flush=True)
    return _bench.fill(text["bytes"], table="\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=["mlp", "cartpole"])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--platform", default="cpu")
    parser.add_argument("--bytes-only", action="store_true", help="only the bytes table")
    parser.add_argument("--accelerator", help="run the accelerator check, write JSON here")
    parser.add_argument(
        "--accelerator-results", type=Path, help="JSON of an accelerator check to include"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="JSON of an accelerator check: redraw its picture and rewrite only its "
        "subsection of --output, measuring nothing",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=_bench.BENCHMARKS_DOC,
        help="markdown file --from-json updates",
    )
    args = parser.parse_args()
    if args.from_json:
        rewrite_accelerator(args.output, args.from_json)
        return
    if args.worker:
        args.workload = args.worker
        worker(args)
        return
    if args.accelerator:
        accelerator_check(args.accelerator)
        return
    # The bytes table compiles for 4 devices in this process.
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    text = _bench.prose("scaling")
    header = _bench.fill(
        text["header"], arch=platform.machine(), cores=os.cpu_count(), date=_bench.today()
    )
    parts = [SECTION_TITLE, "", header]
    if not args.bytes_only:
        parts += ["", generations_text(text, args.quick)]
    if args.accelerator_results:
        parts += ["", accelerator_text(text, args.accelerator_results)]
        if not args.quick:
            draw_accelerator(args.accelerator_results, _bench.BENCHMARKS_DOC)
    parts += ["", bytes_text(text, args.quick)]
    section = "\n".join(parts) + "\n"
    print(section)
    if not args.quick:
        _bench.write_section(_bench.BENCHMARKS_DOC, SECTION_TITLE, section)


if __name__ == "__main__":
    main()
