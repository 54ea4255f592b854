"""Training policies with evolution strategies, on JAX-native or Gymnasium environments.

One block of ``eval_every`` generations (see ``generations``: jitted whole for a JAX env,
episodes in rollout worker processes for a Gymnasium env) is followed by an evaluation of
the mean policy, a log block, a checkpoint and a progress line. Every random draw derives
from ``(seed, generation)``, so a run resumed from its checkpoint continues with exactly the
numbers of a run that was never stopped.
"""

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from es_toolkit import generations, parallel, rollout
from es_toolkit import gym as gym_lib
from es_toolkit import strategies as strategies_lib
from es_toolkit._validate import check_int
from es_toolkit.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from es_toolkit.envs import make as make_env
from es_toolkit.envs import registered as registered_envs
from es_toolkit.policies import ObsStats, init_obs_stats, make_policy
from es_toolkit.progress import Progress
from es_toolkit.report import JsonlLog, metrics_rows, plot_curves, read_jsonl

LOG_NAME = "metrics.jsonl"
CHECKPOINT_NAME = "checkpoint.npz"
# Fields that define what is trained: a resumed run must agree on them.
IDENTITY_FIELDS = (
    "env",
    "backend",
    "strategy",
    "policy",
    "hidden_sizes",
    "population_size",
    "seed",
)
BACKENDS = ("auto", "jax", "gymnasium")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    env: str = "CartPole-v1"
    strategy: str = "open_es"
    policy: str = "linear"
    hidden_sizes: tuple[int, ...] = (32, 32)
    population_size: int = 64
    num_generations: int = 100
    sigma: float | None = None  # None: the strategy's default
    learning_rate: float | None = None  # None: the strategy's default
    episodes_per_member: int = 1
    eval_every: int = 10
    eval_episodes: int = 10
    final_eval_episodes: int = 100
    normalize_obs: bool = True
    common_random_numbers: bool = False
    target_return: float | None = None  # stop once the mean policy's evaluation reaches it
    seed: int = 0
    backend: str = "auto"  # "jax" (a JAX-native port), "gymnasium", or "auto": jax if ported
    num_workers: int | None = None  # Gymnasium rollout worker processes (default: one per core)
    max_episode_steps: int | None = None  # episode length cap (default: the env's time limit)
    reward_shift: float = 0.0  # subtracted from every step's reward in training fitness (ARS)
    strategy_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. ARS's b
    devices: int | None = None  # shard each generation over this many devices (JAX envs)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden_sizes": list(self.hidden_sizes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        return cls(**{**data, "hidden_sizes": tuple(data["hidden_sizes"])})


# Settings that train each task to its threshold quickly on a CPU; the command line starts
# from these and applies what the user gives.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "strategy": "open_es",
        "policy": "linear",
        "population_size": 64,
        "num_generations": 100,
        "sigma": 0.1,
        "learning_rate": 0.05,
        "eval_episodes": 100,
        "target_return": 475.0,
    },
    "Acrobot-v1": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 32,
        "num_generations": 200,
        "eval_episodes": 100,
        "target_return": -90.0,
    },
    "MountainCar-v0": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 32,
        "num_generations": 200,
        "sigma": 1.0,
        "eval_episodes": 100,
        "target_return": -115.0,
    },
    "MountainCarContinuous-v0": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 16,
        "num_generations": 200,
        "sigma": 1.0,
        "eval_every": 5,
        "eval_episodes": 100,
        "target_return": 92.0,
    },
    "Pendulum-v1": {
        "strategy": "snes",
        "policy": "mlp",
        "hidden_sizes": (32, 32),
        "population_size": 32,
        "num_generations": 1000,
        "sigma": 0.1,
        "episodes_per_member": 8,
        "common_random_numbers": True,
        "normalize_obs": False,
        "eval_episodes": 500,
        "target_return": -165.0,
    },
    # Gymnasium's own envs, in rollout workers. ARS V2-t (Mania et al. 2018): linear
    # policy, observation normalization, the paper's hyperparameters for these tasks.
    "HalfCheetah-v5": {
        "strategy": "ars",
        "policy": "linear",
        "population_size": 64,
        "num_generations": 80,
        "sigma": 0.03,
        "learning_rate": 0.02,
        "strategy_options": {"top_directions": 4},
        "eval_episodes": 5,
    },
    "Hopper-v5": {
        "strategy": "ars",
        "policy": "linear",
        "population_size": 16,
        "num_generations": 400,
        "sigma": 0.025,
        "learning_rate": 0.01,
        "strategy_options": {"top_directions": 4},
        "reward_shift": 1.0,  # the survival bonus, removed in training as ARS does
        "eval_every": 20,
        "eval_episodes": 5,
        "target_return": 3000.0,
    },
    "LunarLanderContinuous-v3": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 64,
        "num_generations": 150,
        "sigma": 0.1,
        "episodes_per_member": 2,
        "eval_episodes": 20,
        "target_return": 250.0,
    },
}


def task_defaults(env_id: str) -> dict[str, Any]:
    """The tuned settings for ``env_id`` (empty for tasks without any)."""
    return dict(TASK_DEFAULTS.get(env_id, {}))


class TrainState(NamedTuple):
    strategy_state: Any  # the strategy's state; its mean is the current policy
    obs_stats: ObsStats  # statistics of every observation seen in training
    generation: jax.Array  # int32 generations done
    env_steps: jax.Array  # int32 environment steps taken in training
    best_params: Any  # the mean policy with the best evaluation so far
    best_obs_stats: ObsStats  # the statistics that policy was evaluated with
    best_return: jax.Array  # its mean evaluation return (-inf before the first)


class TrainResult(NamedTuple):
    state: TrainState
    config: TrainConfig
    final_return_mean: float  # the best policy over final_eval_episodes episodes
    final_return_std: float
    out: Path


class Task(NamedTuple):
    """What a config builds: the environment, its params, the policy and the strategy.

    With the Gymnasium backend, ``env`` is the ``WorkerSpec`` rollout workers build their
    envs from and ``env_params`` is None.
    """

    env: Any
    env_params: Any
    policy: Any
    strategy: strategies_lib.EvolutionStrategy
    backend: str = "jax"
    observation_shape: tuple[int, ...] = ()


def resolve_backend(config: TrainConfig) -> str:
    """``jax`` or ``gymnasium``: ``auto`` picks the JAX-native port when there is one."""
    if config.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}.")
    if config.backend == "auto":
        return "jax" if config.env in registered_envs() else "gymnasium"
    if config.backend == "jax" and config.env not in registered_envs():
        raise ValueError(
            f"env {config.env!r} has no JAX-native port (ported: {', '.join(registered_envs())}); "
            "use backend gymnasium."
        )
    return config.backend


def build(config: TrainConfig) -> Task:
    policy_options = {"hidden_sizes": config.hidden_sizes} if config.policy == "mlp" else {}
    backend = resolve_backend(config)
    if backend == "gymnasium":
        env = gym_lib.make_env(config.env, max_episode_steps=config.max_episode_steps)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
        env = gym_lib.WorkerSpec(
            config.env, config.policy, policy_options, config.max_episode_steps
        )
        env_params = None
    else:
        env = make_env(config.env)
        env_params = env.default_params
        if config.max_episode_steps is not None:
            check_int("max_episode_steps", config.max_episode_steps, minimum=1)
            env_params = dataclasses.replace(
                env_params, max_steps_in_episode=config.max_episode_steps
            )
        observation_space = env.observation_space(env_params)
        action_space = env.action_space(env_params)
    policy = make_policy(config.policy, observation_space, action_space, **policy_options)
    if backend == "gymnasium" and policy.numpy_apply is None:
        raise ValueError(f"the {config.policy} policy has no NumPy forward pass for workers.")
    return Task(
        env,
        env_params,
        policy,
        build_strategy(config),
        backend,
        tuple(observation_space.shape),
    )


def build_strategy(config: TrainConfig) -> strategies_lib.EvolutionStrategy:
    """The named strategy with the config's sigma and learning rate where given."""
    options = {"sigma": config.sigma, "learning_rate": config.learning_rate}
    options = {name: value for name, value in options.items() if value is not None}
    factory = strategies_lib.get_strategy(config.strategy)
    return factory(config.population_size, **{**options, **config.strategy_options})


def init_state(config: TrainConfig, task: Task) -> TrainState:
    key = jax.random.key(config.seed)
    params = task.policy.init(jax.random.fold_in(key, 0))
    stats = init_obs_stats(task.observation_shape)
    return TrainState(
        task.strategy.init(params),
        stats,
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        params,
        stats,
        jnp.array(-jnp.inf, jnp.float32),
    )


def make_block(config: TrainConfig, task: Task, pool: Any = None):
    """``block(state) -> (state, per-generation metrics, eval returns)``: ``eval_every``
    generations, then ``eval_episodes`` episodes of the mean policy (see ``generations``)."""
    if task.backend == "gymnasium":
        if config.devices is not None:
            raise ValueError(
                "devices shards JAX environments over devices; Gymnasium envs run in rollout "
                "workers: use num_workers."
            )
        return generations.make_gym_block(config, task, pool)
    return generations.make_jax_block(config, task, population_mesh(config))


def population_mesh(config: TrainConfig):
    """The devices a JAX task shards over: ``config.devices``, every device of every
    process in a multi-process run, or none (one device)."""
    if config.devices is not None:
        return parallel.make_mesh(config.devices)
    return parallel.make_mesh() if jax.process_count() > 1 else None


def rollout_pool(config: TrainConfig, task: Task):
    """The Gymnasium rollout workers a task needs (a context manager; none for JAX envs)."""
    if task.backend != "gymnasium":
        return contextlib.nullcontext()
    return gym_lib.RolloutPool(task.env, config.num_workers)


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Trains ``config``'s policy, writing the log, checkpoint, curve and final evaluation.

    Args:
        config: what to train (for ``resume``, the checkpoint's config is used; its
            identity fields must agree and ``num_generations`` may be raised).
        out: the run's folder: ``metrics.jsonl``, ``checkpoint.npz``, ``curve.png``,
            ``result.json``.
        resume: continue the run saved in ``out``.
        overwrite: replace a run already in ``out`` instead of refusing.
        progress: print a progress line per block on standard error.
    """
    out = Path(out)
    config, state, task = _start(config, out, resume=resume, overwrite=overwrite)
    check_int("eval_every", config.eval_every, minimum=1)
    with rollout_pool(config, task) as pool:
        state = _run_blocks(config, state, out, make_block(config, task, pool), progress)
        return _finish(config, task, state, out, pool)


def _run_blocks(config: TrainConfig, state: TrainState, out: Path, block, progress: bool):
    """Runs blocks until ``num_generations`` or the target, logging and checkpointing each."""
    log = JsonlLog(out / LOG_NAME)
    bar = Progress(
        config.num_generations,
        f"train {config.env}",
        enabled=progress and parallel.is_main_process(),
    )
    start_time = time.perf_counter()
    start_steps = int(state.env_steps)
    try:
        while int(state.generation) < config.num_generations:
            first, steps_before = int(state.generation), int(state.env_steps)
            state, metrics, eval_returns = block(state)
            metrics = jax.device_get(metrics)
            wall = time.perf_counter() - start_time
            rows = metrics_rows(metrics, first)
            steps = steps_before + np.cumsum(metrics["generation_env_steps"])
            for row, total in zip(rows, steps, strict=True):
                row.update(
                    env_steps=int(total),
                    wall_time=wall,
                    steps_per_second=(total - start_steps) / wall,
                )
            rows[-1].update(
                eval_return_mean=float(np.mean(eval_returns)),
                eval_return_std=float(np.std(eval_returns)),
            )
            if parallel.is_main_process():  # every process holds the same state
                log.write(rows)
                save_checkpoint(out / CHECKPOINT_NAME, state, _metadata(config, state))
            bar.update(
                int(state.generation),
                eval_return=float(np.mean(eval_returns)),
                best=float(state.best_return),
                steps_per_s=rows[-1]["steps_per_second"],
            )
            if (
                config.target_return is not None
                and float(state.best_return) >= config.target_return
            ):
                break
    except KeyboardInterrupt:
        bar.close()
        raise KeyboardInterrupt(
            f"interrupted at generation {int(state.generation)}; the checkpoint in {out} "
            "resumes with --resume."
        ) from None
    bar.close()
    return state


def _start(config, out, *, resume, overwrite):
    checkpoint = out / CHECKPOINT_NAME
    if resume:
        saved = TrainConfig.from_json(read_metadata(checkpoint)["config"])
        conflicts = {
            name: (getattr(saved, name), getattr(config, name))
            for name in IDENTITY_FIELDS
            if getattr(config, name) != getattr(saved, name)
        }
        if conflicts:
            details = ", ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in conflicts.items())
            raise CheckpointError(f"cannot resume {checkpoint}: it is another run ({details}).")
        config = dataclasses.replace(
            saved, num_generations=max(config.num_generations, saved.num_generations)
        )
        task = build(config)
        state, _ = load_checkpoint(checkpoint, init_state(config, task))
        if parallel.is_main_process():
            _truncate_log(out / LOG_NAME, int(state.generation))
        return config, state, task
    if (out / LOG_NAME).exists() or checkpoint.exists():
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a run; pass --resume to continue it, --overwrite to "
                "replace it, or choose another --out."
            )
        if parallel.is_main_process():
            for name in (LOG_NAME, CHECKPOINT_NAME, "curve.png", "result.json"):
                (out / name).unlink(missing_ok=True)
    if parallel.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    task = build(config)
    return config, init_state(config, task), task


def _truncate_log(path: Path, generations: int) -> None:
    """Drops log rows past the checkpoint (written before a crash, to be redone)."""
    if not path.exists():
        return
    rows = [row for row in read_jsonl(path) if row["generation"] < generations]
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    JsonlLog(partial).write(rows)
    partial.replace(path)


def _finish(config: TrainConfig, task: Task, state: TrainState, out: Path, pool) -> TrainResult:
    returns = evaluate_policy(
        task, config, state.best_params, state.best_obs_stats, config.final_eval_episodes, pool=pool
    )
    if not parallel.is_main_process():  # process 0 alone writes
        return TrainResult(state, config, float(np.mean(returns)), float(np.std(returns)), out)
    rows = read_jsonl(out / LOG_NAME)
    evaluated = [row for row in rows if row.get("eval_return_mean") is not None]
    plot_curves(
        out / "curve.png",
        [row["env_steps"] for row in rows],
        {
            "population mean return": [row["return_mean"] for row in rows],
            "population max return": [row["return_max"] for row in rows],
        },
        title=f"{config.strategy} on {config.env}, {config.policy} policy",
        xlabel="environment steps",
        ylabel="return",
        points={
            "mean policy (evaluation)": (
                [r["env_steps"] for r in evaluated],
                [r["eval_return_mean"] for r in evaluated],
            )
        },
    )
    summary = {
        "config": config.to_json(),
        "generations": int(state.generation),
        "env_steps": int(state.env_steps),
        "best_eval_return": float(state.best_return),
        "final_eval_episodes": config.final_eval_episodes,
        "final_return_mean": float(np.mean(returns)),
        "final_return_std": float(np.std(returns)),
        "wall_time_s": rows[-1]["wall_time"] if rows else 0.0,
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    return TrainResult(
        state, config, summary["final_return_mean"], summary["final_return_std"], out
    )


def evaluate_policy(
    task: Task,
    config: TrainConfig,
    params,
    obs_stats,
    num_episodes: int,
    seed: int = 12345,
    *,
    pool: Any = None,
):
    """Returns of ``num_episodes`` episodes of a policy, keys independent of training.

    Gymnasium tasks run in ``pool`` (a ``RolloutPool`` for ``task.env``), or in a pool
    started for the call.
    """
    key = jax.random.fold_in(jax.random.key(seed), 3)
    stats = generations.policy_stats(config, obs_stats)
    if task.backend == "gymnasium":
        with contextlib.nullcontext(pool) if pool else rollout_pool(config, task) as workers:
            return gym_lib.evaluate(workers, key, params, stats, num_episodes).returns
    run = jax.jit(
        lambda k: rollout.evaluate(
            k, task.env, task.env_params, task.policy.apply, params, stats, num_episodes
        )
    )
    return np.asarray(run(key).returns)


def load_run(checkpoint: str | Path) -> tuple[TrainConfig, Task, TrainState]:
    """The config, task and state saved in a checkpoint."""
    config = TrainConfig.from_json(read_metadata(checkpoint)["config"])
    task = build(config)
    state, _ = load_checkpoint(checkpoint, init_state(config, task))
    return config, task, state


def _metadata(config: TrainConfig, state: TrainState) -> dict[str, Any]:
    return {"config": config.to_json(), "generation": int(state.generation)}
