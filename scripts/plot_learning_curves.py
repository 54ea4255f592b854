"""Learning curves of the classic-control tasks, trained with their tuned defaults.

Every JAX-native task with tuned settings in ``es_toolkit.training.TASK_DEFAULTS``
(CartPole-v1, Acrobot-v1, MountainCar-v0, MountainCarContinuous-v0, Pendulum-v1) trains
with ``es_toolkit.training.train(TrainConfig.for_env(task), out)`` into a fresh run folder
of its own, one task after the other in this process; a run stops at the task's
``target_return``, as ``train`` does. Each run's ``metrics.jsonl`` gives the curve: per
generation the population's mean return, the env steps so far and the wall time since the
run started (compilation included), and at each evaluation the mean policy's return. The
solve threshold next to it is the final 100-episode return ``scripts/bench_envs.py``
requires of the task.

Writes the curves to ``docs/results/learning_curves.json``, draws
``docs/images/learning_curves.png`` (a panel per task: return against env steps, the
threshold dashed) and rewrites the section "Learning curves" of ``docs/benchmarks.md``.

Usage::

    .venv/bin/python scripts/plot_learning_curves.py          # train all: about a minute
    .venv/bin/python scripts/plot_learning_curves.py --from-json \\
        docs/results/learning_curves.json                     # redraw only, train nothing
    .venv/bin/python scripts/plot_learning_curves.py --quick  # 2 generations, a temp dir
"""

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import _bench
import _plots

SECTION_TITLE = "## Learning curves of the classic-control tasks"
RUN_COMMAND = ".venv/bin/python scripts/plot_learning_curves.py"
DEFAULT_JSON = _bench.ROOT / "docs" / "results" / "learning_curves.json"
IMAGE = "learning_curves.png"  # in images/ next to the Markdown file
VERSIONS_OF = ("jax", "jaxlib", "numpy")
QUICK_GENERATIONS = 2


def log(message):
    print(message, file=sys.stderr, flush=True)


def solve_thresholds() -> dict[str, float]:
    """The tasks to train and the final return each must reach: the JAX-native tasks
    with tuned defaults, with ``bench_envs``'s thresholds."""
    from bench_envs import SOLVE_ENVS
    from es_toolkit.envs import registered

    from es_toolkit.training import TASK_DEFAULTS

    return {env: SOLVE_ENVS[env] for env in TASK_DEFAULTS if env in registered()}


# --------------------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------------------


def train_task(env: str, threshold: float, runs_dir: Path, max_generations: int | None):
    """Trains ``env`` with its tuned defaults (at most ``max_generations`` generations)
    into ``runs_dir/env``; its curve read back from the run's ``metrics.jsonl``."""
    from es_toolkit.report import read_jsonl
    from es_toolkit.run_folder import LOG_NAME
    from es_toolkit.training import TrainConfig, train

    tuned = TrainConfig.for_env(env)
    capped = max_generations is not None and max_generations < tuned.num_generations
    config = TrainConfig.for_env(env, num_generations=max_generations) if capped else tuned
    out = runs_dir / env
    start = time.perf_counter()
    result = train(config, out, overwrite=True, progress=False)
    train_s = time.perf_counter() - start
    rows = read_jsonl(out / LOG_NAME)
    return task_record(config, threshold, rows, result, train_s, tuned.num_generations)


def task_record(config, threshold, rows, result, train_s, tuned_generations) -> dict:
    """What the JSON keeps of a run: its settings, its curve (one entry per generation)
    and its evaluations (one per block), and how it ended; ``capped`` where the run was
    allowed fewer than the ``tuned_generations`` of its defaults."""
    evaluated = [row for row in rows if row.get("eval_return_mean") is not None]
    return {
        "env": config.env,
        "threshold": threshold,
        "target_return": config.target_return,
        "strategy": config.strategy,
        "policy": config.policy,
        "hidden_sizes": list(config.hidden_sizes),
        "population_size": config.population_size,
        "num_generations": tuned_generations,
        "capped": config.num_generations < tuned_generations,
        "generations": len(rows),
        "train_s": train_s,
        "final_return_mean": result.final_return_mean,
        "final_return_std": result.final_return_std,
        "curve": {
            "generation": [row["generation"] for row in rows],
            "env_steps": [row["env_steps"] for row in rows],
            "return_mean": [row["return_mean"] for row in rows],
            "wall_time_s": [row["wall_time"] for row in rows],
        },
        "evaluations": {
            "generation": [row["generation"] for row in evaluated],
            "env_steps": [row["env_steps"] for row in evaluated],
            "return_mean": [row["eval_return_mean"] for row in evaluated],
        },
    }


def train_all(args, argv) -> dict:
    start, load_before = time.perf_counter(), _bench.load_average()
    thresholds = solve_thresholds()
    tasks = args.tasks or list(thresholds)
    unknown = [task for task in tasks if task not in thresholds]
    if unknown:
        raise SystemExit(f"--tasks: unknown {unknown}; choose from {list(thresholds)}")
    with tempfile.TemporaryDirectory(prefix="learning_curves_runs_") as temporary:
        runs_dir = args.runs_dir or Path(temporary)
        records = []
        for env in tasks:
            log(f"[train] {env} into {runs_dir / env}")
            record = train_task(env, thresholds[env], runs_dir, args.max_generations)
            log(
                f"[train] {env}: {record['generations']} generations, "
                f"{record['curve']['env_steps'][-1]:,} env steps, {record['train_s']:.1f} s, "
                f"final return {record['final_return_mean']:.1f}"
            )
            records.append(record)
    meta = {
        "argv": argv,
        "elapsed_s": time.perf_counter() - start,
        "machine": _bench.machine_description(),
        "python": platform.python_version(),
        "versions": _bench.package_versions(VERSIONS_OF),
        "library": _bench.library_version(),
        "load_before": load_before,
        "load_after": _bench.load_average(),
        "date": _bench.today(),
        "max_generations": args.max_generations,
    }
    return {"meta": meta, "tasks": records}


# --------------------------------------------------------------------------------------
# The picture.
# --------------------------------------------------------------------------------------


def policy_name(task) -> str:
    """``linear`` or ``mlp 32x32`` (the hidden sizes matter to an MLP only)."""
    if task["policy"] != "mlp":
        return task["policy"]
    return f"mlp {'x'.join(str(size) for size in task['hidden_sizes'])}"


def generations_text(task) -> str:
    """``10``, or ``2 of 200 (capped)`` where the run was allowed fewer than its tuned
    number of generations."""
    if task["capped"]:
        return f"{task['generations']} of {task['num_generations']} (capped)"
    return f"{task['generations']}"


def plot_curves(saved: dict, path: Path) -> None:
    """A panel per task: the population's mean return and the mean policy's evaluations
    against env steps, the solve threshold dashed; the legend in a last panel."""
    plt = _plots.pyplot()
    from matplotlib.ticker import FuncFormatter

    tasks = saved["tasks"]
    columns = 3
    rows = (len(tasks) + 1 + columns - 1) // columns  # one more cell for the legend
    figure, grid = plt.subplots(rows, columns, figsize=(11, 3.3 * rows), squeeze=False)
    cells = list(grid.flat)
    for axes, task in zip(cells, tasks, strict=False):
        curve, evaluations = task["curve"], task["evaluations"]
        axes.plot(curve["env_steps"], curve["return_mean"], color=_plots.OURS, linewidth=1.2)
        axes.plot(
            evaluations["env_steps"], evaluations["return_mean"], "o", color=_plots.PYCMA,
            markersize=4,
        )  # fmt: skip
        axes.axhline(task["threshold"], color="black", linestyle="--", linewidth=1)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _plots.value_text(x)))
        axes.set_title(
            f"{task['env']}: {task['strategy']}, {policy_name(task)}\n"
            f"generations: {generations_text(task)}, {task['curve']['wall_time_s'][-1]:.1f} s",
            fontsize=9,
        )
        axes.set_xlim(left=0)
        axes.margins(y=0.1)  # the dots of the last evaluation sit on the top edge otherwise
        axes.grid(True, alpha=0.3)
        axes.set_xlabel("env steps", fontsize=8)
        axes.set_ylabel("return", fontsize=8)
        axes.tick_params(labelsize=8)
    legend_cell = cells[len(tasks)]
    legend_cell.axis("off")
    handles = [
        plt.Line2D([], [], color=_plots.OURS, label="population mean return (per generation)"),
        plt.Line2D([], [], marker="o", linestyle="", color=_plots.PYCMA,
                   label="mean policy, evaluation episodes"),
        plt.Line2D([], [], color="black", linestyle="--", label="solve threshold"),
    ]  # fmt: skip
    legend_cell.legend(handles=handles, loc="center", fontsize=9, frameon=False)
    for axes in cells[len(tasks) + 1 :]:
        axes.axis("off")
    capped = saved["meta"].get("max_generations")
    figure.suptitle(
        "Training with the tuned defaults (TASK_DEFAULTS, seed 0), each run until its target"
        + (f"; generations capped at {capped}" if capped else "")
    )
    _plots.save(figure, path)


# --------------------------------------------------------------------------------------
# The section of docs/benchmarks.md.
# --------------------------------------------------------------------------------------


def curves_table(tasks) -> str:
    lines = [
        "| task | strategy, policy, population | generations | env steps | training loop (s) "
        "| `train` call (s) | last evaluation | final return (100 episodes) | threshold |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task in tasks:
        evaluations = task["evaluations"]["return_mean"]
        last = f"{evaluations[-1]:.1f}" if evaluations else "-"
        final = f"{task['final_return_mean']:.1f} ± {task['final_return_std']:.1f}"
        if task["final_return_mean"] < task["threshold"]:
            final += " (below)"
        lines.append(
            f"| {task['env']} | {task['strategy']}, {policy_name(task)}, "
            f"{task['population_size']} | {generations_text(task)} "
            f"| {task['curve']['env_steps'][-1]:,} | {task['curve']['wall_time_s'][-1]:.1f} "
            f"| {task['train_s']:.1f} | {last} | {final} | {task['threshold']:g} |"
        )
    return "\n".join(lines)


def render(saved) -> str:
    text = _bench.prose("learning_curves")
    meta = saved["meta"]
    header = _bench.fill(
        text["header"],
        machine=meta["machine"],
        python=meta["python"],
        versions=meta["versions"],
        library=meta["library"],
        date=meta["date"],
        seconds=f"{meta['elapsed_s']:.0f}",
        load_before=meta["load_before"],
        load_after=meta["load_after"],
        command=_bench.reproduce_command(
            RUN_COMMAND, meta["argv"], output_options=(*_bench.OUTPUT_OPTIONS, "--runs-dir")
        ),
    )
    curves = _bench.fill(text["curves"], table=curves_table(saved["tasks"]))
    return "\n\n".join([SECTION_TITLE, header, curves]) + "\n"


def results_json(saved) -> str:
    """``saved`` as indented JSON with each list of numbers on one line."""
    text = json.dumps(saved, indent=1)
    return re.sub(r"\[([^\[\]{}\"]*)\]", lambda m: f"[{' '.join(m.group(1).split())}]", text) + "\n"


def report(saved, args) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(results_json(saved))
    section = render(saved)
    print(section)
    if args.output:
        plot_curves(saved, _plots.image_path(args.output, IMAGE))
        _bench.write_section(args.output, SECTION_TITLE, section)
        log(f"[done] wrote {args.output}")


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_GENERATIONS} generations per task; results in a new temporary folder "
        "unless --output and --json say where",
    )
    parser.add_argument("--tasks", nargs="+", help="tasks to train (default: all)")
    parser.add_argument(
        "--max-generations", type=int, help="cap every task's generations (said in the figure)"
    )
    parser.add_argument(
        "--runs-dir", type=Path, help="keep the run folders here (default: a temporary folder)"
    )
    _bench.add_output_options(parser)
    args = parser.parse_args(argv)
    if args.max_generations is not None and args.max_generations < 1:
        parser.error(f"--max-generations must be at least 1, got {args.max_generations}")
    if args.quick:
        args.max_generations = args.max_generations or QUICK_GENERATIONS
        if args.output is None or args.json is None:
            folder = Path(tempfile.mkdtemp(prefix="learning_curves_"))
            args.output = args.output or folder / "benchmarks.md"
            args.json = args.json or folder / "learning_curves.json"
    else:
        args.output = args.output or _bench.BENCHMARKS_DOC
        if not args.from_json:
            args.json = args.json or DEFAULT_JSON
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    saved = json.loads(args.from_json.read_text()) if args.from_json else train_all(args, argv)
    report(saved, args)


if __name__ == "__main__":
    main()
