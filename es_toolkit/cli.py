"""The ``es-toolkit`` command: ``optimize`` a test objective or a Python function,
``train`` a policy, ``evaluate`` a trained one. It parses arguments and calls the library;
every error is one line naming the flag, the path or the missing extra (followed, when a
Python objective fails, by its traceback).
"""

import argparse
import contextlib
import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from es_toolkit import objectives, parallel
from es_toolkit import restarts as restarts_lib
from es_toolkit import strategies as strategies_lib
from es_toolkit.checkpoint import CheckpointError
from es_toolkit.evaluators import EvaluationError, WorkerLostError
from es_toolkit.gym import RolloutError
from es_toolkit.gym.record import check_recording, record_episode
from es_toolkit.objective_loading import is_spec
from es_toolkit.optimize import BOUND_HANDLINGS
from es_toolkit.optimize_config import ON_ERROR, OptimizeConfig, optimal_value
from es_toolkit.optimize_run import read_optimization, run_optimization
from es_toolkit.run_folder import RunFolderError
from es_toolkit.tracking import LOGGERS
from es_toolkit.training import (
    BACKENDS,
    ConfigError,
    TrainConfig,
    evaluate_policy,
    load_run,
    open_backend,
    read_config,
    train,
)
from es_toolkit.training.state import policy_stats

DEFAULT_ENV = "CartPole-v1"
ERRORS = (
    ValueError,
    TypeError,
    ImportError,
    OSError,
    CheckpointError,
    RolloutError,
    RunFolderError,
    EvaluationError,  # a Python objective failed on a member: the message holds its traceback
    WorkerLostError,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ERRORS as error:
        message = str(error) or type(error).__name__
        if isinstance(error, ConfigError):
            message = _flag_names(message, args.flags)
        parser.exit(2, f"es-toolkit {args.command}: error: {message}\n")
    except KeyboardInterrupt as interrupt:
        parser.exit(130, f"es-toolkit {args.command}: {str(interrupt) or 'interrupted'}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="es-toolkit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_optimize_command, add_train_command, add_evaluate_command):
        command = add(commands)
        command.set_defaults(flags=_config_flags(command))
    return parser


def add_optimize_command(commands: Any) -> argparse.ArgumentParser:
    defaults = OptimizeConfig()
    cmd = commands.add_parser(
        "optimize",
        help="minimize a black-box test objective or Python function",
        description="Minimize a built-in test objective or any Python function with an "
        "evolution strategy into a run folder. "
        "With --resume --out DIR alone, continue the run in DIR.",
    )
    cmd.add_argument(
        "--objective",
        type=_objective_spec,
        metavar="NAME|FILE.py:FUNCTION|MODULE:FUNCTION",
        help="a built-in test function, jitted in JAX "
        f"({', '.join(sorted(objectives.OBJECTIVES))}; default {defaults.objective}), or any "
        "Python function of a NumPy array returning a float: path/to/file.py:function or "
        "package.module:function",
    )
    cmd.add_argument(
        "--dim",
        type=int,
        help=f"number of parameters d (default: the length of --x0, else {defaults.dim})",
    )
    cmd.add_argument(
        "--x0",
        type=_start_point,
        metavar="X|X1,X2,...|FILE.npy",
        help="the start: a number for every coordinate, a comma list (write --x0=-1,2 when "
        "it starts with a minus) or a .npy file of a 1-D array (default: a built-in's random "
        "start; for a Python function, the middle of --bounds, else the point of the box "
        "nearest 0)",
    )
    cmd.add_argument(
        "--strategy",
        choices=sorted(strategies_lib.STRATEGIES),
        help=f"(default {defaults.strategy})",
    )
    cmd.add_argument(
        "--population",
        type=int,
        dest="population_size",
        help=f"population size (default {defaults.population_size})",
    )
    cmd.add_argument(
        "--generations",
        type=int,
        dest="num_generations",
        help=f"generation budget (default {defaults.num_generations}); raise it to extend a run",
    )
    cmd.add_argument("--seed", type=int, help=f"(default {defaults.seed})")
    cmd.add_argument(
        "--sigma",
        type=float,
        help="initial perturbation scale (default: 5%% of a built-in's domain width; for a "
        "Python function, a quarter of the --bounds width, else 1)",
    )
    cmd.add_argument(
        "--chunk-size", type=int, help="members evaluated at once (default: as memory allows)"
    )
    cmd.add_argument("--target", type=float, help="stop at this value")
    cmd.add_argument(
        "--bounds",
        type=_bounds_pair,
        metavar="LO,HI",
        help="search only the box [LO, HI]^d; LO or HI empty or inf: no bound on that side "
        "(write --bounds=-5,5 when LO is negative)",
    )
    cmd.add_argument(
        "--bound-handling",
        choices=BOUND_HANDLINGS,
        help="transform (default: pycma's map of every point into the box) or penalty "
        "(f at the nearest point of the box plus the squared distance)",
    )
    cmd.add_argument(
        "--max-evaluations",
        type=int,
        metavar="N",
        help="budget of objective evaluations over all runs (default: none); raise it to "
        "extend a run",
    )
    cmd.add_argument(
        "--restarts",
        choices=restarts_lib.KINDS,
        help="when the strategy stops on its own criteria, start again with a larger "
        "population (ipop) or alternating large and small ones (bipop; needs a strategy "
        "with a step size, such as cma_es)",
    )
    add_python_objective_arguments(cmd)
    add_run_folder_arguments(cmd, "runs/optimize-OBJECTIVE-dD-STRATEGY-seedS")
    add_parallel_arguments(cmd)
    cmd.set_defaults(run=run_optimize)
    return cmd


def add_python_objective_arguments(cmd: Any) -> None:
    """How a Python --objective (FILE.py:FUNCTION or MODULE:FUNCTION) is evaluated."""
    defaults = OptimizeConfig()
    group = cmd.add_argument_group(
        "Python objectives",
        "A Python function runs in this process unless --workers or --dask-scheduler "
        "sends it elsewhere; the run folder then has a checkpoint after every generation.",
    )
    group.add_argument(
        "--vectorized",
        action="store_true",
        default=None,
        help="the function takes the whole population, shape (population, d), and returns "
        "(population,) values",
    )
    group.add_argument(
        "--workers", type=int, metavar="N", help="evaluate on N local worker processes"
    )
    group.add_argument(
        "--dask-scheduler",
        metavar="HOST:PORT",
        help="evaluate on the Dask cluster of this scheduler (needs es_toolkit[dask])",
    )
    group.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="fail an evaluation that takes longer"
    )
    group.add_argument(
        "--on-error",
        choices=ON_ERROR,
        help="a failed evaluation: raise (default) stops the run; worst gives the member the "
        "worst value and counts it in the log's failures",
    )
    group.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        help=f"evaluations retried after their worker died (default {defaults.max_retries})",
    )


def run_optimize(args: argparse.Namespace) -> int:
    start_processes(args)
    given = _given_fields(args, OptimizeConfig)
    _check_resume_flags(args)
    if args.resume:
        out = args.out or OptimizeConfig(**given).default_out()
        config = dataclasses.replace(read_optimization(out), **given)
    else:
        config = OptimizeConfig(**given)
        out = args.out or config.default_out()
    result = run_optimization(
        config, out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet
    )
    if parallel.is_main_process():
        optimal = optimal_value(config)
        known = "" if optimal is None else f" (optimum {optimal:.6g})"
        print(
            f"{config.objective_label} d={config.dim} {config.strategy}: best value "
            f"{result.best_value:.6g}{known} after {result.num_generations} "
            f"generations ({result.num_evaluations} evaluations, restarts: "
            f"{result.num_restarts}, stop: {result.stop_reason})"
        )
        print(f"run folder {out}: metrics.jsonl, checkpoint.npz, curve.png, result.json")
    return 0


def add_train_command(commands: Any) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "train",
        help="train a policy on a JAX-native or Gymnasium environment",
        description="Train a policy with an evolution strategy, from the task's tuned "
        f"settings (TrainConfig.for_env). With no options: {DEFAULT_ENV} with OpenES and a "
        "linear policy, until solved. With --resume --out DIR alone, continue the run in DIR.",
    )
    cmd.add_argument("--env", help=f"environment id (default {DEFAULT_ENV})")
    cmd.add_argument("--strategy", choices=sorted(strategies_lib.STRATEGIES))
    cmd.add_argument("--policy", choices=["linear", "mlp"])
    cmd.add_argument("--hidden-sizes", type=int, nargs="+", help="MLP hidden layer sizes")
    cmd.add_argument("--population", type=int, dest="population_size")
    cmd.add_argument(
        "--generations", type=int, dest="num_generations", help="raise it to extend a run"
    )
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
        choices=("auto", *BACKENDS),
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
        "--video",
        type=Path,
        help="after training, record an episode of the best policy to this .gif or video "
        "(.mp4 needs es_toolkit[video]) and log it",
    )
    add_run_folder_arguments(cmd, "runs/train-ENV-STRATEGY-seedS")
    add_parallel_arguments(cmd)
    cmd.set_defaults(run=run_train)
    return cmd


def run_train(args: argparse.Namespace) -> int:
    start_processes(args)
    given = _given_fields(args, TrainConfig)
    if "hidden_sizes" in given:
        given["hidden_sizes"] = tuple(given["hidden_sizes"])
    if args.top_directions is not None:
        given["strategy_options"] = {"top_directions": args.top_directions}
    _check_resume_flags(args)
    if args.resume:
        others = {name: value for name, value in given.items() if name != "env"}
        default = TrainConfig.for_env(given.get("env", DEFAULT_ENV), **others)
        out = args.out or _default_out(default)
        saved = read_config(out)
        options = {**saved.strategy_options, **given.pop("strategy_options", {})}
        config = dataclasses.replace(saved, **given, strategy_options=options)
    else:
        config = TrainConfig.for_env(given.pop("env", DEFAULT_ENV), **given)
        out = args.out or _default_out(config)
    result = train(
        config,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        video=args.video,
    )
    if parallel.is_main_process():
        print(
            f"{result.config.env} {result.config.strategy}: mean return "
            f"{result.final_return_mean:.2f} +- {result.final_return_std:.2f} over "
            f"{result.config.final_eval_episodes} episodes after {int(result.state.generation)} "
            f"generations ({int(result.state.env_steps)} env steps)"
        )
        print(f"run folder {out}: metrics.jsonl, checkpoint.npz, curve.png, result.json")
    return 0


def add_evaluate_command(commands: Any) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "evaluate",
        help="run a trained policy from its run folder",
        description="Evaluate the best policy of a run, in the run's own environment or in "
        "Gymnasium's (--backend gymnasium), and optionally record an episode as a GIF or a "
        "video (MuJoCo envs render headless with MUJOCO_GL=egl).",
    )
    cmd.add_argument("run_path", type=Path, help="a run folder or its checkpoint.npz")
    cmd.add_argument("--episodes", type=int, default=100)
    cmd.add_argument("--seed", type=int, default=12345)
    cmd.add_argument("--backend", choices=("auto", *BACKENDS), help="default: the run's own")
    cmd.add_argument("--num-workers", type=int, help="Gymnasium rollout workers (default: cores)")
    cmd.add_argument("--gif", type=Path, help="record one episode in Gymnasium's env as a GIF")
    cmd.add_argument("--video", type=Path, help="record one episode as a video (.mp4)")
    cmd.set_defaults(run=run_evaluate)
    return cmd


def run_evaluate(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise ValueError(f"--episodes must be an int >= 1, got {args.episodes}.")
    recordings = [check_recording(path) for path in (args.gif, args.video) if path is not None]
    config, state = load_run(args.run_path)
    overrides = {"backend": args.backend, "num_workers": args.num_workers}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    with contextlib.closing(open_backend(config)) as backend:
        returns = evaluate_policy(
            backend, config, state.best_params, state.best_obs_stats, args.episodes, args.seed
        )
    print(
        f"{config.env} ({backend.name}): mean return {returns.mean():.2f} +- "
        f"{returns.std():.2f} over {args.episodes} episodes"
    )
    for path in recordings:
        episode = record_episode(
            config.env,
            backend.policy.numpy_apply,
            jax.tree.map(np.asarray, state.best_params),
            policy_stats(config, state.best_obs_stats),
            path,
            seed=args.seed,
            max_episode_steps=config.max_episode_steps,
        )
        print(f"recorded {path}: return {episode.returns[0]:.2f} in {episode.lengths[0]} steps")
    return 0


def add_run_folder_arguments(cmd: Any, default_out: str) -> None:
    """``--out`` and what to do with a run already there, ``--quiet`` and ``--logger``."""
    cmd.add_argument("--out", type=Path, help=f"the run folder (default {default_out})")
    cmd.add_argument("--resume", action="store_true", help="continue the run in --out")
    cmd.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    cmd.add_argument("--quiet", action="store_true", help="no progress line")
    cmd.add_argument(
        "--logger",
        action="append",
        choices=LOGGERS,
        dest="loggers",
        help="also log to TensorBoard (OUT/tensorboard/, needs es_toolkit[tensorboard]) or "
        "Weights & Biases (project WANDB_PROJECT or es_toolkit, needs es_toolkit[wandb]; "
        "WANDB_MODE=offline keeps it local); repeat for both. A resumed run keeps its "
        "loggers unless given again",
    )


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


def _given_fields(args: argparse.Namespace, config_type: type) -> dict[str, Any]:
    """The fields of ``config_type`` set on the command line (flags left out are absent)."""
    fields = {field.name for field in dataclasses.fields(config_type)}
    return {k: v for k, v in vars(args).items() if k in fields and v is not None}


def _bounds_pair(text: str) -> tuple[float | None, float | None]:
    """``LO,HI`` as two floats, an empty side as None (no bound)."""
    sides = text.split(",")
    try:
        if len(sides) != 2:
            raise ValueError(text)
        low, high = (float(side) if side.strip() else None for side in sides)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO,HI: two floats, either empty or inf for no bound, got {text!r}"
        ) from None
    return low, high


def _objective_spec(text: str) -> str:
    """A built-in objective's name or a Python function's spec (checked when loaded)."""
    if not is_spec(text) and text not in objectives.OBJECTIVES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (a built-in: {', '.join(sorted(objectives.OBJECTIVES))}; "
            "or a Python function: path/to/file.py:function or package.module:function)"
        )
    return text


def _start_point(text: str) -> float | tuple[float, ...] | str:
    """``--x0``: a float, a comma list of floats, or a .npy file's path (read later)."""
    if text.endswith(".npy"):
        return text
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, a comma list of numbers or a .npy file, got {text!r}"
        ) from None
    return values if "," in text else values[0]


def _check_resume_flags(args: argparse.Namespace) -> None:
    if args.resume and args.overwrite:
        raise ValueError(
            "--resume continues the run in --out and --overwrite replaces it: give one."
        )


def _default_out(config: TrainConfig) -> Path:
    return Path("runs") / f"train-{config.env}-{config.strategy}-seed{config.seed}"


def _config_flags(command: argparse.ArgumentParser) -> dict[str, str]:
    """The flag of each config field a command sets (``population_size``: ``--population``)."""
    fields = {
        f.name for config in (TrainConfig, OptimizeConfig) for f in dataclasses.fields(config)
    }
    return {
        action.dest: action.option_strings[0]
        for action in command._actions
        if action.option_strings and action.dest in {*fields, "top_directions"}
    }


def _flag_names(message: str, flags: dict[str, str]) -> str:
    """``message`` with argument names (``population_size``) written as their flags."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(flags, key=len)[::-1])) + r")\b")
    return pattern.sub(lambda match: flags[match.group(1)], message) if flags else message


if __name__ == "__main__":
    sys.exit(main())
