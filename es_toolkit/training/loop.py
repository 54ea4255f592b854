"""The training loop: blocks of generations, each followed by an evaluation of the mean
policy, a log block, a checkpoint and a progress line, in a run folder.

Blocks end at multiples of ``eval_every`` and at ``num_generations``, so a run does
exactly the generations asked for, and a run extended on resume evaluates where a run
never stopped would have.
"""

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from es_toolkit import parallel
from es_toolkit._validate import check_int
from es_toolkit.checkpoint import load_checkpoint, read_metadata
from es_toolkit.gym.record import check_recording, record_episode
from es_toolkit.progress import Progress
from es_toolkit.report import metrics_rows
from es_toolkit.run_folder import CHECKPOINT_NAME, RunClock, RunFolder, RunFolderError
from es_toolkit.tracking import Logger, RunLoggers
from es_toolkit.tracking.run_loggers import run_loggers, split_loggers
from es_toolkit.training import keys
from es_toolkit.training.backends import Backend, open_backend
from es_toolkit.training.config import TrainConfig, resume_config
from es_toolkit.training.state import TrainState, init_state, policy_stats


class TrainResult(NamedTuple):
    state: TrainState
    config: TrainConfig
    final_return_mean: float  # the best policy over final_eval_episodes episodes
    final_return_std: float
    out: Path


def train(
    config: TrainConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    loggers: Sequence[str | Logger] = (),
    video: str | Path | None = None,
) -> TrainResult:
    """Trains ``config``'s policy into the run folder ``out``: ``metrics.jsonl``,
    ``checkpoint.npz``, ``curve.png``, ``result.json`` (and ``tensorboard/``, ``wandb/``
    for those loggers).

    Args:
        config: what to train (``TrainConfig.for_env`` gives the tuned settings of a
            task). With ``resume``, ``None`` continues the saved run as it was; a config
            may change only ``RESUMABLE_FIELDS`` (``num_generations`` extends the run).
        out: the run's folder; one run owns it at a time.
        resume: continue the run saved in ``out``.
        overwrite: replace a run already in ``out`` instead of refusing.
        progress: print a progress line per block on standard error.
        loggers: where else the run's records go (``es_toolkit.tracking``): names
            (``"tensorboard"``, ``"wandb"``), added to ``config.loggers`` and so kept by a
            resumed run, or logger objects, which get every log row, the config, the
            curve and the video, and which are theirs to close.
        video: after the final evaluation, record an episode of the best policy in
            Gymnasium's env to this file (``.gif``, or ``.mp4`` and the like with the
            ``video`` extra), and log it.
    """
    folder = RunFolder(out, writer=parallel.is_main_process())
    metadata = folder.read_metadata() if resume else {}
    if resume:
        saved = TrainConfig.from_json(metadata["config"])
        config = resume_config(saved, config, str(out), metadata["generation"])
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
    names, objects = split_loggers(loggers)
    config = dataclasses.replace(config, loggers=(*config.loggers, *names))
    video = None if video is None else check_recording(video)
    with (
        contextlib.closing(open_backend(config)) as backend,
        folder.claim(resume=resume, overwrite=overwrite),
    ):
        state = _initial_state(config, backend)
        if resume:
            state, _ = folder.load_checkpoint(state)
            folder.truncate_log(int(state.generation))
        with run_loggers(config.loggers, folder, config.to_json(), metadata, objects) as tracking:
            run = _Run(config, backend, folder, metadata.get("wall_time_s", 0.0), tracking)
            state = run.blocks(state, progress)
            return run.finish(state, video)


def read_config(path: str | Path) -> TrainConfig:
    """The config of the run saved in a run folder (or its checkpoint file)."""
    path = Path(path)
    metadata = read_metadata(path) if _is_checkpoint(path) else RunFolder(path).read_metadata()
    return TrainConfig.from_json(metadata["config"])


def load_run(path: str | Path) -> tuple[TrainConfig, TrainState]:
    """The config and state saved in a run folder or its checkpoint file."""
    checkpoint = _checkpoint_path(path)
    config = read_config(checkpoint)
    with contextlib.closing(open_backend(config)) as backend:
        state, _ = load_checkpoint(checkpoint, _initial_state(config, backend))
    return config, state


def evaluate_policy(
    backend: Backend,
    config: TrainConfig,
    params: Any,
    obs_stats: Any,
    num_episodes: int,
    seed: int = keys.EVALUATION_SEED,
) -> np.ndarray:
    """Returns of ``num_episodes`` episodes of a policy, with keys independent of training."""
    check_int("num_episodes", num_episodes, minimum=1)
    stats = policy_stats(config, obs_stats)
    return backend.evaluate(keys.policy_evaluation_key(seed), params, stats, num_episodes)


def _is_checkpoint(path: Path) -> bool:
    return path.suffix == ".npz"


def _checkpoint_path(path: str | Path) -> Path:
    """A run's checkpoint file, given the file or the run's folder."""
    path = Path(path)
    return path if _is_checkpoint(path) else path / CHECKPOINT_NAME


def _initial_state(config: TrainConfig, backend: Backend) -> TrainState:
    return init_state(config, backend.policy, backend.strategy, backend.observation_shape)


class _Run:
    """One process's part of a run: blocks, their records, and the final evaluation."""

    def __init__(
        self,
        config: TrainConfig,
        backend: Backend,
        folder: RunFolder,
        wall: float,
        tracking: RunLoggers,
    ):
        self.config, self.backend, self.folder = config, backend, folder
        self.clock = RunClock(wall)
        self.tracking = tracking

    def blocks(self, state: TrainState, progress: bool) -> TrainState:
        """Runs blocks until ``num_generations`` or the target, logging and checkpointing."""
        config = self.config
        saved = int(state.generation)
        bar = Progress(
            config.num_generations,
            f"train {config.env}",
            enabled=progress and parallel.is_main_process(),
            initial=saved,
        )
        start_steps = int(state.env_steps)
        try:
            while saved < config.num_generations:
                end = min(
                    (saved // config.eval_every + 1) * config.eval_every, config.num_generations
                )
                steps_before = int(state.env_steps)
                state, metrics, eval_returns = self.backend.block(end - saved)(state)
                rows = self._rows(jax.device_get(metrics), saved, steps_before, start_steps)
                rows[-1].update(
                    eval_return_mean=float(np.mean(eval_returns)),
                    eval_return_std=float(np.std(eval_returns)),
                )
                self.folder.append_log(rows)
                self.tracking.log_metrics(rows)  # the rows the log got
                self.folder.save_checkpoint(state, self._metadata(state))
                saved = int(state.generation)
                bar.update(
                    saved,
                    eval_return=float(np.mean(eval_returns)),
                    best=float(state.best_return),
                    steps_per_s=rows[-1]["steps_per_second"],
                )
                target = config.target_return
                if target is not None and float(state.best_return) >= target:
                    break
        except KeyboardInterrupt:
            bar.close()
            raise KeyboardInterrupt(
                f"interrupted; the checkpoint of generation {saved} in {self.folder.path} "
                "resumes with --resume."
            ) from None
        except RunFolderError as error:
            bar.close()
            raise RunFolderError(
                f"{error} The checkpoint of generation {saved} in {self.folder.path} is intact "
                "and resumes with --resume."
            ) from error
        bar.close()
        return state

    def _rows(self, metrics, first: int, steps_before: int, start_steps: int) -> list[dict]:
        """The block's log rows; steps per second count this process's steps only."""
        rows = metrics_rows(metrics, first)
        wall = self.clock.elapsed()
        session = self.clock.session()
        totals = steps_before + np.cumsum(metrics["generation_env_steps"])
        for row, total in zip(rows, totals, strict=True):
            row.update(
                env_steps=int(total),
                wall_time=wall,
                steps_per_second=(total - start_steps) / session,
            )
        return rows

    def finish(self, state: TrainState, video: Path | None = None) -> TrainResult:
        config = self.config
        returns = evaluate_policy(
            self.backend,
            config,
            state.best_params,
            state.best_obs_stats,
            config.final_eval_episodes,
        )
        mean, std = float(np.mean(returns)), float(np.std(returns))
        result = TrainResult(state, config, mean, std, self.folder.path)
        if not parallel.is_main_process():  # process 0 alone writes
            return result
        rows = self.folder.read_log()
        evaluated = [row for row in rows if row.get("eval_return_mean") is not None]
        self.folder.plot(
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
        self.folder.write_result(
            {
                "config": config.to_json(),
                "generations": int(state.generation),
                "env_steps": int(state.env_steps),
                "best_eval_return": float(state.best_return),
                "final_eval_episodes": config.final_eval_episodes,
                "final_return_mean": mean,
                "final_return_std": std,
                "wall_time_s": rows[-1]["wall_time"] if rows else self.clock.elapsed(),
            }
        )
        self.tracking.log_image("curve", self.folder.curve)
        if video is not None:
            self._record(state, video)
            self.tracking.log_video("evaluation", video)
        return result

    def _record(self, state: TrainState, path: Path) -> None:
        """An episode of the best policy, in Gymnasium's env, written to ``path``."""
        record_episode(
            self.config.env,
            self.backend.policy.numpy_apply,
            jax.tree.map(np.asarray, state.best_params),
            policy_stats(self.config, state.best_obs_stats),
            path,
            seed=keys.EVALUATION_SEED,
            max_episode_steps=self.config.max_episode_steps,
        )

    def _metadata(self, state: TrainState) -> dict[str, Any]:
        return {
            "config": self.config.to_json(),
            "generation": int(state.generation),
            "wall_time_s": self.clock.elapsed(),
            **self.tracking.metadata,
        }
