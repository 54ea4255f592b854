"""Rollout workers: processes that run whole episodes of NumPy policies in Gymnasium envs.

A worker owns one env for its whole life and receives batches of episodes: the policy
parameters of the members concerned (NumPy arrays), the observation statistics to
normalize with, and one seed per episode. It sends back per-episode returns, lengths and
observation statistics. Whole episodes, not lock-step steps: for envs that step in tens of
microseconds, a pipe round trip per step would cost more than the step.

The protocol over a socket wrapped in a ``multiprocessing`` connection: the parent sends a
``WorkerSpec``, then ``EpisodeBatch`` objects and finally ``None``; the worker answers the
spec with ``("ready", pid)`` and each batch with ``("ok", EpisodeResults)`` or
``("error", message)``, and exits on ``None`` or when the parent's end of the pipe closes
(so a parent that dies leaves no worker behind).
"""

import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import jax
import numpy as np

from es_toolkit.gym.env import make_env
from es_toolkit.policies import ObsStats, make_policy, numpy_normalizer


class WorkerSpec(NamedTuple):
    """What every worker builds once: the env and the policy's NumPy forward pass."""

    env_id: str
    policy_kind: str
    policy_options: dict[str, Any]
    max_episode_steps: int | None = None


class EpisodeBatch(NamedTuple):
    """Episodes to run: episode ``k`` is member ``members[k]`` with ``params`` row
    ``rows[k]`` (a pytree of NumPy arrays with a leading axis), reset with ``seeds[k]``."""

    params: Any
    rows: np.ndarray
    members: np.ndarray
    seeds: np.ndarray
    obs_stats: ObsStats | None  # normalize observations with these (NumPy arrays), or not


class EpisodeResults(NamedTuple):
    returns: np.ndarray  # (episodes,) float64 undiscounted returns
    lengths: np.ndarray  # (episodes,) int64 steps
    obs_stats: ObsStats  # stacked per episode: count (episodes,), mean and m2 (episodes, d)


class Episode(NamedTuple):
    total: float
    length: int
    observations: np.ndarray  # (length, d) the observations the policy acted on


def run_episode(env: Any, act, normalize, params: Any, seed: int) -> Episode:
    """One episode from ``env.reset(seed=seed)`` until terminated or truncated (the env's
    time limit): ``act(params, normalize(obs))`` picks each action."""
    obs, _ = env.reset(seed=int(seed))
    total, length, seen = 0.0, 0, []
    while True:
        seen.append(np.asarray(obs, np.float32))
        action = act(params, normalize(obs))
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        length += 1
        if terminated or truncated:
            return Episode(total, length, np.stack(seen))


def episode_stats(observations: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of one episode's observations."""
    x = observations.astype(np.float64)
    mean = x.mean(axis=0)
    return float(len(x)), mean, ((x - mean) ** 2).sum(axis=0)


def run_batch(env: Any, act, batch: EpisodeBatch) -> EpisodeResults:
    """Every episode of ``batch``; an env error names the member and seed."""
    normalize = (lambda obs: obs) if batch.obs_stats is None else numpy_normalizer(batch.obs_stats)
    returns, lengths, counts, means, m2s = [], [], [], [], []
    for row, member, seed in zip(batch.rows, batch.members, batch.seeds, strict=True):
        params = jax.tree.map(lambda leaf, row=row: leaf[row], batch.params)
        try:
            episode = run_episode(env, act, normalize, params, seed)
        except Exception as error:
            raise RuntimeError(
                f"{type(error).__name__}: {error} (member {member}, seed {seed})"
            ) from error
        count, mean, m2 = episode_stats(episode.observations)
        returns.append(episode.total)
        lengths.append(episode.length)
        counts.append(count)
        means.append(mean)
        m2s.append(m2)
    return EpisodeResults(
        np.array(returns, np.float64),
        np.array(lengths, np.int64),
        ObsStats(np.array(counts), np.stack(means), np.stack(m2s)),
    )


def serve(connection, spec: WorkerSpec) -> None:
    """The worker process's main loop (see the module docstring)."""
    # Ctrl-C goes to the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        env = make_env(spec.env_id, max_episode_steps=spec.max_episode_steps)
        policy = make_policy(
            spec.policy_kind, env.observation_space, env.action_space, **spec.policy_options
        )
        if policy.numpy_apply is None:
            raise ValueError(
                f"the {spec.policy_kind} policy with options {spec.policy_options} has no "
                "NumPy forward pass (a custom activation function?); use a named activation."
            )
    except Exception as error:
        connection.send(("error", f"could not start: {type(error).__name__}: {error}"))
        return
    connection.send(("ready", os.getpid()))
    while True:
        try:
            batch = connection.recv()
        except (EOFError, OSError):
            break
        if batch is None:
            break
        try:
            connection.send(("ok", run_batch(env, policy.numpy_apply, batch)))
        except Exception as error:
            connection.send(("error", str(error)))
    env.close()


def main() -> None:
    """Entry point of a worker process: ``python -c '...main()' FD`` (see ``pool.py``)."""
    connection = Connection(int(sys.argv[-1]))
    try:
        spec = connection.recv()
    except (EOFError, OSError):
        return
    serve(connection, spec)
