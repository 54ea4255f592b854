"""Episodes of NumPy policies in Gymnasium envs, several envs side by side.

A ``LockStep`` keeps one episode running in each of its envs. Each step, one call of the
policy's NumPy forward pass (``Policy.numpy_apply`` on the stacked parameters and
observations of the running episodes) picks every env's next action: for a fast env
(CartPole steps in ~6 us) the few NumPy calls of a forward pass would otherwise cost as
much as the step. Episodes come in batches, possibly several at once, and an env that
finishes an episode starts the next waiting one, so the envs stay busy until the last
batch ends. Each episode's numbers are those of its member alone, whichever episodes run
beside it (see ``numpy_matmul``; tested bit for bit).
"""

import collections
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from es_toolkit.gym.env import import_gymnasium
from es_toolkit.policies import NumpyNormalization, ObsStats, numpy_normalizer

# Envs a rollout worker steps side by side.
ENVS_PER_WORKER = 16


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


def episode_stats(
    observations: list[list[np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of each episode's observations, stacked.

    The sums run over each episode's rows in order (``np.add.reduceat``), so an episode's
    numbers do not depend on the episodes computed with it.
    """
    counts = np.array([len(episode) for episode in observations])
    x = np.array([row for episode in observations for row in episode], np.float64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.add.reduceat(x, starts, axis=0) / counts[:, None]
    m2s = np.add.reduceat((x - np.repeat(means, counts, axis=0)) ** 2, starts, axis=0)
    return counts.astype(np.float64), means, m2s


class _Running:
    """One batch's progress: its leaves, normalization and the results so far."""

    def __init__(self, tag: Any, batch: EpisodeBatch):
        self.tag, self.batch = tag, batch
        self.leaves = jax.tree.leaves(batch.params)
        self.normalization = numpy_normalizer(batch.obs_stats)
        count = len(batch.seeds)
        self.returns, self.lengths = np.zeros(count, np.float64), np.zeros(count, np.int64)
        self.observations: list[list[np.ndarray]] = [[] for _ in range(count)]
        self.left = count

    def results(self) -> EpisodeResults:
        return EpisodeResults(
            self.returns, self.lengths, ObsStats(*episode_stats(self.observations))
        )


class LockStep:
    """``envs`` stepped side by side over the episodes of the batches ``add``ed to it.

    ``step`` advances every running episode by one step and returns the batches that
    completed. An episode ends when terminated, truncated (the env's time limit) or after
    ``limit`` steps. An error of the env or the policy names the member and seed.
    """

    def __init__(self, envs: Sequence[Any], act, limit: int | None = None):
        self.envs, self.act, self.limit = list(envs), act, limit
        self.waiting: collections.deque = collections.deque()  # (running batch, episode)
        self.episode: list[tuple[_Running, int] | None] = [None] * len(self.envs)
        self.totals = [0.0] * len(self.envs)
        self.seen: list[list[np.ndarray]] = [[] for _ in self.envs]
        self.normalized_by: list[_Running | None] = [None] * len(self.envs)
        self.params = self.stacked = self.observations = self.normalization = None

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        return not self.waiting and not any(self.episode)

    @property
    def hungry(self) -> bool:
        """Some env is free and no episode waits for it: time to add a batch."""
        return not self.waiting and not all(self.episode)

    def add(self, tag: Any, batch: EpisodeBatch) -> None:
        """Queues every episode of ``batch``; ``step`` returns its results with ``tag``."""
        running = _Running(tag, batch)
        if self.stacked is None:
            leaves, treedef = jax.tree.flatten(batch.params)
            self.stacked = [np.zeros((len(self.envs), *x.shape[1:]), x.dtype) for x in leaves]
            self.params = jax.tree.unflatten(treedef, self.stacked)
        self.waiting.extend((running, index) for index in range(len(batch.seeds)))

    def step(self) -> list[tuple[Any, EpisodeResults]]:
        """Starts waiting episodes in free envs, steps every running episode once, and
        returns ``(tag, results)`` of each batch whose last episode ended."""
        for slot, current in enumerate(self.episode):
            if current is None and self.waiting:
                self._start(slot)
        running = [slot for slot, current in enumerate(self.episode) if current is not None]
        if not running:
            return []
        try:
            actions = self.act(self.params, self.normalization(self.observations))
        except Exception as error:
            raise self._error(error, running[0]) from error
        done = []
        envs, totals, observations, limit = self.envs, self.totals, self.observations, self.limit
        for slot in running:
            try:
                obs, reward, terminated, truncated, _ = envs[slot].step(actions[slot])
            except Exception as error:
                raise self._error(error, slot) from error
            totals[slot] += reward
            seen = self.seen[slot]
            if terminated or truncated or len(seen) == limit:
                self._finish(slot, done)
                continue
            observations[slot] = obs  # as float32, the policy's input
            seen.append(observations[slot].copy())
        return done

    def _finish(self, slot: int, done: list) -> None:
        """Records the episode in ``slot``, notes its batch in ``done`` if that completes
        it, and starts the next waiting episode there."""
        batch, index = self.episode[slot]
        seen = self.seen[slot]
        batch.returns[index], batch.lengths[index] = self.totals[slot], len(seen)
        batch.observations[index] = seen
        batch.left -= 1
        if not batch.left:
            done.append((batch.tag, batch.results()))
        self.episode[slot] = None
        if self.waiting:
            self._start(slot)

    def clear(self) -> None:
        """Drops every running and waiting episode (after an error)."""
        self.waiting.clear()
        self.episode = [None] * len(self.envs)

    def _start(self, slot: int) -> None:
        batch, index = self.episode[slot] = self.waiting.popleft()
        row = batch.batch.rows[index]
        for stack, leaf in zip(self.stacked, batch.leaves, strict=True):
            stack[slot] = leaf[row]
        try:
            obs, _ = self.envs[slot].reset(seed=int(batch.batch.seeds[index]))
        except Exception as error:
            raise self._error(error, slot) from error
        if self.observations is None:
            self.observations = np.zeros((len(self.envs), *np.shape(obs)), np.float32)
            # One row of normalization per env: batches may normalize differently.
            zeros, ones = np.zeros_like(self.observations), np.ones_like(self.observations)
            self.normalization = NumpyNormalization(zeros, ones, zeros.copy(), zeros.copy())
        if self.normalized_by[slot] is not batch:
            for field, rows in zip(self.normalization, batch.normalization, strict=True):
                field[slot] = rows
            self.normalized_by[slot] = batch
        self.observations[slot] = obs
        self.totals[slot], self.seen[slot] = 0.0, [self.observations[slot].copy()]

    def _error(self, error: Exception, slot: int) -> RuntimeError:
        batch, index = self.episode[slot]
        member, seed = batch.batch.members[index], batch.batch.seeds[index]
        return RuntimeError(f"{type(error).__name__}: {error} (member {member}, seed {seed})")


def run_batch(
    envs: Sequence[Any], act, batch: EpisodeBatch, limit: int | None = None
) -> EpisodeResults:
    """Every episode of ``batch``, ``len(envs)`` at a time side by side (see ``LockStep``)."""
    lock_step = LockStep(envs, act, limit)
    lock_step.add(None, batch)
    while True:
        for _, results in lock_step.step():
            return results


def unwrap_bookkeeping(env: Any) -> tuple[Any, int | None]:
    """The env under the wrappers ``gymnasium.make`` adds for bookkeeping, and the time
    limit to count in their place; ``(env, None)`` if it has any other wrapper.

    The env checker checks only the first reset and step, order enforcement only that
    ``reset`` comes first (``LockStep`` always resets), and the time limit is counted by
    ``LockStep``: the episodes are the same, and a step costs about 1 us less.
    """
    wrappers = import_gymnasium().wrappers
    bookkeeping = (wrappers.PassiveEnvChecker, wrappers.OrderEnforcing, wrappers.TimeLimit)
    inner, limit = env, None
    while inner is not getattr(inner, "unwrapped", inner):
        if type(inner) not in bookkeeping:
            return env, None
        if type(inner) is wrappers.TimeLimit:
            limit = inner._max_episode_steps
        inner = inner.env
    return inner, limit
