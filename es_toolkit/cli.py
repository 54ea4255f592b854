"""The ``es-toolkit`` command.

``es-toolkit optimize``: minimize a black-box test objective with an evolution strategy,
showing progress, printing the final value, and writing a JSONL log, a PNG of the curve and
a ``result.json`` into the output folder.
"""

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from es_toolkit import generations, objectives, parallel
from es_toolkit import strategies as strategies_lib
from es_toolkit.checkpoint import CheckpointError
from es_toolkit.gym import RolloutError
from es_toolkit.gym.record import record_episode
from es_toolkit.optimize import minimize
from es_toolkit.report import JsonlLog, metrics_rows, plot_curves
from es_toolkit.train import (
    BACKENDS,
    TrainConfig,
    build,
    evaluate_policy,
    load_run,
    task_defaults,
    train,
)

LOG_NAME = "metrics.jsonl"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (
        ValueError,
        TypeError,
        ImportError,
        FileExistsError,
        CheckpointError,
        RolloutError,
    ) as error:
        parser.exit(2, f"es-toolkit {args.command}: error: {error}\n")
    except KeyboardInterrupt as interrupt:
        parser.exit(130, f"es-toolkit {args.command}: {interrupt or 'interrupted'}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="es-toolkit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_optimize_command(commands)
    add_train_command(commands)
    add_evaluate_command(commands)
    return parser


def add_optimize_command(commands: Any) -> None:
    cmd = commands.add_parser(
        "optimize",
        help="minimize a black-box test objective",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cmd.add_argument("--objective", default="rastrigin", choices=sorted(objectives.OBJECTIVES))
    cmd.add_argument("--dim", type=int, default=10, help="number of parameters d")
    cmd.add_argument("--strategy", default="open_es", choices=sorted(strategies_lib.STRATEGIES))
    cmd.add_argument("--population", type=int, default=64, help="population size")
    cmd.add_argument("--generations", type=int, default=1000, help="generation budget")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="initial perturbation scale (default: 5%% of the objective's domain width)",
    )
    cmd.add_argument("--chunk-size", type=int, default=None, help="members evaluated at once")
    cmd.add_argument("--target", type=float, default=None, help="stop at this value")
    cmd.add_argument("--out", type=Path, default=None, help="output folder")
    cmd.add_argument("--overwrite", action="store_true", help="replace a previous run's files")
    cmd.add_argument("--quiet", action="store_true", help="no progress line")
    add_parallel_arguments(cmd)
    cmd.set_defaults(run=run_optimize)


def run_optimize(args: argparse.Namespace) -> int:
    start_processes(args)
    main_process = parallel.is_main_process()
    objective = objectives.get(args.objective)
    low, high = objective.bounds
    sigma = args.sigma if args.sigma is not None else 0.05 * (high - low)
    strategy = make_strategy(args.strategy, args.population, sigma)
    out = args.out or Path("runs") / (
        f"optimize-{args.objective}-d{args.dim}-{args.strategy}-seed{args.seed}"
    )
    log = JsonlLog(claim_output_folder(out, args.overwrite) / LOG_NAME) if main_process else None
    key = jax.random.key(args.seed)
    x0 = objective.init(jax.random.fold_in(key, 0), args.dim)
    start = time.perf_counter()
    written = 0

    def record(info: dict[str, Any]) -> None:
        nonlocal written
        rows = metrics_rows(info["metrics"], written)
        wall = time.perf_counter() - start
        if log is not None:
            log.write([{**row, "wall_time": wall} for row in rows])
        written += len(rows)

    result = minimize(
        objective.fn,
        x0,
        strategy=strategy,
        num_generations=args.generations,
        key=jax.random.fold_in(key, 1),
        chunk_size=args.chunk_size,
        target=args.target,
        callback=record,
        progress=not args.quiet and main_process,
        mesh=args.devices or (jax.device_count() if jax.process_count() > 1 else None),
    )
    wall = time.perf_counter() - start
    optimal = objective.optimal_value(args.dim)
    if not main_process:
        return 0
    curve = plot_curves(
        out / "curve.png",
        np.arange(1, result.num_generations + 1),
        {
            "best value": result.metrics["best_value"],
            "value at the mean": result.metrics["mean_value"],
        },
        title=f"{args.strategy} on {args.objective}, d = {args.dim}",
        xlabel="generation",
        ylabel="objective (lower is better)",
        log_y=True,
    )
    summary = {
        "objective": args.objective,
        "dim": args.dim,
        "strategy": args.strategy,
        "population": args.population,
        "sigma": sigma,
        "seed": args.seed,
        "generations": result.num_generations,
        "best_value": result.best_value,
        "optimal_value": optimal,
        "reached_target": result.reached_target,
        "wall_time_s": wall,
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{args.objective} d={args.dim} {args.strategy}: best value {result.best_value:.6g} "
        f"(optimum {optimal:.6g}) after {result.num_generations} generations in {wall:.1f}s"
    )
    print(f"log {out / LOG_NAME}, curve {curve}, summary {out / 'result.json'}")
    return 0


def add_train_command(commands: Any) -> None:
    cmd = commands.add_parser(
        "train",
        help="train a policy on a JAX-native or Gymnasium environment",
        description="Train a policy with an evolution strategy. With no options: CartPole-v1 "
        "with OpenES and a linear policy, until solved.",
    )
    defaults = TrainConfig()
    cmd.add_argument("--env", help=f"environment id (default {defaults.env})")
    cmd.add_argument("--strategy", choices=sorted(strategies_lib.STRATEGIES))
    cmd.add_argument("--policy", choices=["linear", "mlp"])
    cmd.add_argument("--hidden-sizes", type=int, nargs="+", help="MLP hidden layer sizes")
    cmd.add_argument("--population", type=int, dest="population_size")
    cmd.add_argument("--generations", type=int, dest="num_generations")
    cmd.add_argument("--sigma", type=float)
    cmd.add_argument("--learning-rate", type=float)
    cmd.add_argument("--episodes-per-member", type=int)
    cmd.add_argument("--eval-every", type=int, help="generations between evaluations")
    cmd.add_argument("--eval-episodes", type=int)
    cmd.add_argument("--final-eval-episodes", type=int)
    cmd.add_argument("--target-return", type=float, help="stop once the evaluation reaches it")
    cmd.add_argument("--no-normalize-obs", dest="normalize_obs", action="store_false", default=None)
    cmd.add_argument("--common-random-numbers", action="store_true", default=None)
    cmd.add_argument("--seed", type=int)
    cmd.add_argument(
        "--backend",
        choices=BACKENDS,
        help="jax: a JAX-native port; gymnasium: Gymnasium's env in rollout workers; "
        "auto (default): the port when there is one",
    )
    cmd.add_argument("--num-workers", type=int, help="Gymnasium rollout workers (default: cores)")
    cmd.add_argument("--max-episode-steps", type=int, help="episode length cap")
    cmd.add_argument(
        "--reward-shift", type=float, help="subtracted from each step's reward in training (ARS)"
    )
    cmd.add_argument("--top-directions", type=int, help="ARS: directions kept per generation (b)")
    cmd.add_argument(
        "--out", type=Path, help="output folder (default runs/train-ENV-STRATEGY-seedS)"
    )
    cmd.add_argument("--resume", action="store_true", help="continue the run in --out")
    cmd.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    cmd.add_argument("--quiet", action="store_true")
    add_parallel_arguments(cmd)
    cmd.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    start_processes(args)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if "hidden_sizes" in given:
        given["hidden_sizes"] = tuple(given["hidden_sizes"])
    defaults = task_defaults(given.get("env", TrainConfig.env))
    if args.top_directions is not None:
        given["strategy_options"] = {
            **defaults.get("strategy_options", {}),
            "top_directions": args.top_directions,
        }
    config = TrainConfig(**{**defaults, **given})
    out = args.out or Path("runs") / f"train-{config.env}-{config.strategy}-seed{config.seed}"
    result = train(
        config, out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet
    )
    if not parallel.is_main_process():
        return 0
    print(
        f"{result.config.env} {result.config.strategy}: mean return "
        f"{result.final_return_mean:.2f} +- {result.final_return_std:.2f} over "
        f"{result.config.final_eval_episodes} episodes after {int(result.state.generation)} "
        f"generations ({int(result.state.env_steps)} env steps)"
    )
    print(f"run folder {out}: metrics.jsonl, checkpoint.npz, curve.png, result.json")
    return 0


def add_evaluate_command(commands: Any) -> None:
    cmd = commands.add_parser(
        "evaluate",
        help="run a trained policy from its checkpoint",
        description="Evaluate the best policy of a run, in the run's own environment or in "
        "Gymnasium's (--backend gymnasium), and optionally record an episode as a GIF or a "
        "video (MuJoCo envs render headless with MUJOCO_GL=egl).",
    )
    cmd.add_argument("checkpoint", type=Path)
    cmd.add_argument("--episodes", type=int, default=100)
    cmd.add_argument("--seed", type=int, default=12345)
    cmd.add_argument("--backend", choices=BACKENDS, help="default: the run's own backend")
    cmd.add_argument("--num-workers", type=int, help="Gymnasium rollout workers (default: cores)")
    cmd.add_argument("--gif", type=Path, help="record one episode in Gymnasium's env as a GIF")
    cmd.add_argument("--video", type=Path, help="record one episode as a video (.mp4)")
    cmd.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    config, task, state = load_run(args.checkpoint)
    overrides = {"backend": args.backend, "num_workers": args.num_workers}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if overrides:
        config = dataclasses.replace(config, **overrides)
        task = build(config)
    stats = generations.policy_stats(config, state.best_obs_stats)
    returns = evaluate_policy(
        task, config, state.best_params, state.best_obs_stats, args.episodes, seed=args.seed
    )
    print(
        f"{config.env} ({task.backend}): mean return {returns.mean():.2f} +- "
        f"{returns.std():.2f} over {args.episodes} episodes"
    )
    for path in (args.gif, args.video):
        if path is not None:
            params = jax.tree.map(np.asarray, state.best_params)
            episode = record_episode(
                config.env,
                task.policy.numpy_apply,
                params,
                stats,
                path,
                seed=args.seed,
                max_episode_steps=config.max_episode_steps,
            )
            print(f"recorded {path}: return {episode.returns[0]:.2f} in {episode.lengths[0]} steps")
    return 0


def add_parallel_arguments(cmd: Any) -> None:
    """``--devices`` and the multi-process start-up options (see docs/multihost.md)."""
    group = cmd.add_argument_group(
        "devices and hosts",
        "Shard the population over devices, and over processes started on one or more "
        f"hosts (or set {parallel.ENV_COORDINATOR}, {parallel.ENV_NUM_PROCESSES} and "
        f"{parallel.ENV_PROCESS_ID}). Process 0 alone writes the run's files.",
    )
    group.add_argument(
        "--devices", type=int, help="devices to shard over (default: all, if several processes)"
    )
    group.add_argument("--coordinator", help="HOST:PORT of process 0; it binds only there")
    group.add_argument("--num-processes", type=int)
    group.add_argument("--process-id", type=int)


def start_processes(args: argparse.Namespace) -> None:
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)


def make_strategy(name: str, population_size: int, sigma: float):
    """A strategy by name with the given population and (initial) sigma."""
    return strategies_lib.get_strategy(name)(population_size, sigma=sigma)


def claim_output_folder(out: Path, overwrite: bool) -> Path:
    """Creates ``out``; refuses a folder that holds another run unless ``overwrite``."""
    log = out / LOG_NAME
    if log.exists():
        if not overwrite:
            raise FileExistsError(
                f"--out {out} already holds a run ({log}); choose another folder or pass "
                "--overwrite to replace it."
            )
        log.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
