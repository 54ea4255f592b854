"""Training policies on JAX-native environments with evolution strategies.

One generation (ask, the whole population's episodes, tell, observation statistics merged
over the population) is one jitted step; ``eval_every`` generations run as one jitted
block, followed by an evaluation of the mean policy, a log block, a checkpoint and a
progress line. Every random draw derives from ``(seed, generation)``, so a run resumed from
its checkpoint continues with exactly the numbers of a run that was never stopped.
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from es_toolkit import rollout
from es_toolkit import strategies as strategies_lib
from es_toolkit._validate import check_int
from es_toolkit.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from es_toolkit.envs import make as make_env
from es_toolkit.policies import ObsStats, init_obs_stats, make_policy, merge_obs_stats
from es_toolkit.progress import Progress
from es_toolkit.report import JsonlLog, metrics_rows, plot_curves, read_jsonl

LOG_NAME = "metrics.jsonl"
CHECKPOINT_NAME = "checkpoint.npz"
# Fields that define what is trained: a resumed run must agree on them.
IDENTITY_FIELDS = ("env", "strategy", "policy", "hidden_sizes", "population_size", "seed")


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

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden_sizes": list(self.hidden_sizes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        return cls(**{**data, "hidden_sizes": tuple(data["hidden_sizes"])})


# Settings that train each JAX-native task to its threshold quickly on a CPU; the command
# line starts from these and applies what the user gives.
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
    """What a config builds: the environment, its params, the policy and the strategy."""

    env: Any
    env_params: Any
    policy: Any
    strategy: strategies_lib.EvolutionStrategy


def build(config: TrainConfig) -> Task:
    env = make_env(config.env)
    env_params = env.default_params
    policy_options = {"hidden_sizes": config.hidden_sizes} if config.policy == "mlp" else {}
    policy = make_policy(
        config.policy,
        env.observation_space(env_params),
        env.action_space(env_params),
        **policy_options,
    )
    return Task(env, env_params, policy, build_strategy(config))


def build_strategy(config: TrainConfig) -> strategies_lib.EvolutionStrategy:
    """The named strategy with the config's sigma and learning rate where given."""
    name, n, sigma, lr = config.strategy, config.population_size, config.sigma, config.learning_rate
    options: dict[str, Any] = {}
    if name == "open_es":
        options = {"optimizer": optax.adam(0.01 if lr is None else lr)}
        options.update({} if sigma is None else {"sigma": sigma})
    elif name == "pgpe":
        options.update({} if sigma is None else {"sigma_init": sigma})
        options.update({} if lr is None else {"center_learning_rate": lr})
    elif name == "snes":
        options.update({} if sigma is None else {"sigma_init": sigma})
        options.update({} if lr is None else {"learning_rate_mean": lr})
    elif name == "ars":
        options.update({} if sigma is None else {"sigma": sigma})
        options.update({} if lr is None else {"learning_rate": lr})
    return strategies_lib.get_strategy(name)(n, **options)


def init_state(config: TrainConfig, task: Task) -> TrainState:
    key = jax.random.key(config.seed)
    params = task.policy.init(jax.random.fold_in(key, 0))
    stats = init_obs_stats(task.env.observation_space(task.env_params).shape)
    return TrainState(
        task.strategy.init(params),
        stats,
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        params,
        stats,
        jnp.array(-jnp.inf, jnp.float32),
    )


def make_block(config: TrainConfig, task: Task):
    """``block(state) -> (state, per-generation metrics, eval returns)``: ``eval_every``
    generations, then ``eval_episodes`` episodes of the mean policy."""
    run_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    eval_key = jax.random.fold_in(jax.random.key(config.seed), 2)
    strategy, env, env_params, apply = task.strategy, task.env, task.env_params, task.policy.apply

    def stats_for_policy(stats):
        return stats if config.normalize_obs else None

    def generation(state: TrainState, _):
        key = jax.random.fold_in(run_key, state.generation)
        population = strategy.ask(key, state.strategy_state)
        episodes = rollout.evaluate_population(
            key,
            env,
            env_params,
            apply,
            population,
            stats_for_policy(state.obs_stats),
            config.episodes_per_member,
            common_random_numbers=config.common_random_numbers,
        )
        strategy_state, metrics = strategy.tell(key, state.strategy_state, episodes.returns)
        metrics = {name.replace("fitness_", "return_"): value for name, value in metrics.items()}
        steps = jnp.sum(episodes.lengths)
        state = state._replace(
            strategy_state=strategy_state,
            obs_stats=merge_obs_stats(state.obs_stats, episodes.obs_stats),
            generation=state.generation + 1,
            env_steps=state.env_steps + steps,
        )
        return state, {**metrics, "generation_env_steps": steps}

    def block(state: TrainState):
        state, metrics = jax.lax.scan(generation, state, length=config.eval_every)
        mean = state.strategy_state.mean
        stats = stats_for_policy(state.obs_stats)
        evaluation = rollout.evaluate(
            jax.random.fold_in(eval_key, state.generation),
            env,
            env_params,
            apply,
            mean,
            stats,
            config.eval_episodes,
        )
        score = jnp.mean(evaluation.returns)
        better = score > state.best_return
        state = state._replace(
            best_params=_where(better, mean, state.best_params),
            best_obs_stats=_where(better, state.obs_stats, state.best_obs_stats),
            best_return=jnp.maximum(score, state.best_return),
        )
        return state, metrics, evaluation.returns

    return jax.jit(block)


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
    block = make_block(config, task)
    log = JsonlLog(out / LOG_NAME)
    bar = Progress(config.num_generations, f"train {config.env}", enabled=progress)
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
    return _finish(config, task, state, out)


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
        _truncate_log(out / LOG_NAME, int(state.generation))
        return config, state, task
    if (out / LOG_NAME).exists() or checkpoint.exists():
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a run; pass --resume to continue it, --overwrite to "
                "replace it, or choose another --out."
            )
        for name in (LOG_NAME, CHECKPOINT_NAME, "curve.png", "result.json"):
            (out / name).unlink(missing_ok=True)
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


def _finish(config: TrainConfig, task: Task, state: TrainState, out: Path) -> TrainResult:
    returns = evaluate_policy(
        task, config, state.best_params, state.best_obs_stats, config.final_eval_episodes
    )
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
    task: Task, config: TrainConfig, params, obs_stats, num_episodes: int, seed: int = 12345
):
    """Returns of ``num_episodes`` episodes of a policy, keys independent of training."""
    key = jax.random.fold_in(jax.random.key(seed), 3)
    stats = obs_stats if config.normalize_obs else None
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


def _where(condition, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)
