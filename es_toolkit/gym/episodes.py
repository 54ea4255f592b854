"""Episodes of NumPy policies in Gymnasium envs, several envs side by side.

A ``LockStep`` keeps one episode running in each of its envs. Each step, one call of the
policy's NumPy forward pass (``Policy.numpy_apply`` on the stacked parameters and
observations of the running episodes) picks every env's next action: for a fast env
(CartPole steps in ~6 us) the few NumPy calls of a forward pass would otherwise cost as
much as the step. An env that finishes an episode claims the next one (from a queue that
rollout workers share, see ``claims``), so the envs stay busy until the queue is empty.
Each episode's numbers are those of its member alone, whichever episodes run beside it
(see ``numpy_matmul``; tested bit for bit).
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from es_toolkit.gym.env import import_gymnasium
from es_toolkit.policies import ObsStats, numpy_normalizer

# Envs a rollout worker steps side by side.
ENVS_PER_WORKER = 16
# Finished episodes whose observations are kept before they are reduced to statistics
# together: memory stays bounded by this many episodes, plus the running ones.
REDUCE_EVERY = 64


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
    observations: Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of each episode's observations (an array
    of rows per episode), stacked.

    The sums run over each episode's rows in order (``np.add.reduceat``), so an episode's
    numbers do not depend on the episodes computed with it.
    """
    counts = np.array([len(episode) for episode in observations])
    x = np.concatenate(observations, dtype=np.float64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.add.reduceat(x, starts, axis=0) / counts[:, None]
    m2s = np.add.reduceat((x - np.repeat(means, counts, axis=0)) ** 2, starts, axis=0)
    return counts.astype(np.float64), means, m2s


class _Observations:
    """The observations of each env's running episode, in a buffer per env that doubles
    when full: a row write per step, and no array per observation. A finished episode's
    rows are copied out and reduced to statistics (``episode_stats``) with others,
    ``REDUCE_EVERY`` episodes at a time."""

    def __init__(self, envs: int, shape: tuple[int, ...]):
        self.buffers = [np.empty((64, *shape), np.float32) for _ in range(envs)]
        self.finished: list[np.ndarray] = []  # rows of each finished, unreduced episode
        self.positions: list[int] = []  # in the order started, of those episodes
        self.reduced: list[tuple[np.ndarray, ...]] = []  # (positions, count, mean, m2)

    def grow(self, slot: int) -> np.ndarray:
        """``slot``'s buffer, twice as long, with the rows it had."""
        buffer = self.buffers[slot]
        grown = np.empty((2 * len(buffer), *buffer.shape[1:]), np.float32)
        grown[: len(buffer)] = buffer
        self.buffers[slot] = grown
        return grown

    def finish(self, slot: int, length: int, position: int) -> None:
        """The episode in ``slot`` ended with ``length`` rows; it was started ``position``th."""
        self.finished.append(self.buffers[slot][:length].copy())
        self.positions.append(position)
        if len(self.finished) >= REDUCE_EVERY:
            self.reduce()

    def reduce(self) -> None:
        if self.finished:
            self.reduced.append((np.array(self.positions), *episode_stats(self.finished)))
            self.finished, self.positions = [], []

    def results(self) -> ObsStats:
        """Every finished episode's statistics, stacked in the order started (at least
        one episode finished: the buffers exist once one started)."""
        self.reduce()
        positions, *stats = (np.concatenate(field) for field in zip(*self.reduced, strict=True))
        order = np.argsort(positions)
        return ObsStats(*(field[order] for field in stats))


class LockStep:
    """``envs`` stepped side by side over the episodes of a batch.

    ``run`` starts an episode in every free env, steps every running episode once per
    step of the loop, and ends an episode when terminated, truncated (the env's time
    limit) or after ``limit`` steps. An error of the env or the policy names the member
    and seed.
    """

    def __init__(self, envs: Sequence[Any], act, limit: int | None = None):
        self.envs, self.act, self.limit = list(envs), act, limit

    def run(
        self, batch: EpisodeBatch, claim: Callable[[], int | None]
    ) -> tuple[np.ndarray, EpisodeResults]:
        """Runs the episodes of ``batch`` that ``claim()`` hands out, one whenever an env
        is free, until it returns None and the last of them ended.

        Returns:
            The indices of the episodes run, in the order claimed, and their results in
            that order.
        """
        envs, act, limit = self.envs, self.act, self.limit
        steps = [env.step for env in envs]
        leaves, treedef = jax.tree.flatten(batch.params)
        stacked = [np.zeros((len(envs), *leaf.shape[1:]), leaf.dtype) for leaf in leaves]
        params = jax.tree.unflatten(treedef, stacked)
        normalize = numpy_normalizer(batch.obs_stats)
        claimed: list[int] = []
        returns: list[float] = []
        position = [0] * len(envs)  # of each env's episode in ``claimed``
        counts = [0] * len(envs)  # observations of each env's episode so far
        totals = [0.0] * len(envs)
        observations = None  # of the running episodes, as float32: the policy's input
        rows: list[np.ndarray] = []  # each env's row of ``observations``
        observed: _Observations | None = None
        exhausted = False

        def start(slot: int) -> bool:
            """Starts the next claimed episode in ``slot``; False if none is left."""
            nonlocal observations, rows, observed, exhausted
            index = None if exhausted else claim()
            if index is None:
                exhausted = True
                return False
            member_row = batch.rows[index]
            for stack, leaf in zip(stacked, leaves, strict=True):
                stack[slot] = leaf[member_row]
            position[slot] = len(claimed)
            claimed.append(index)
            returns.append(0.0)
            try:
                obs, _ = envs[slot].reset(seed=int(batch.seeds[index]))
            except Exception as error:
                raise _error(error, batch, index) from error
            if observations is None:
                observations = np.zeros((len(envs), *np.shape(obs)), np.float32)
                rows = list(observations)
                observed = _Observations(len(envs), observations.shape[1:])
            rows[slot][...] = obs
            observed.buffers[slot][0] = rows[slot]
            counts[slot] = 1
            totals[slot] = 0.0
            return True

        running = [slot for slot in range(len(envs)) if start(slot)]
        if running:
            normalize = normalize.shaped(observations.shape)
            buffers = observed.buffers
        while running:
            try:
                actions = act(params, normalize(observations))
            except Exception as error:
                raise _error(error, batch, claimed[position[running[0]]]) from error
            still = []
            for slot in running:
                try:
                    obs, reward, terminated, truncated, _ = steps[slot](actions[slot])
                except Exception as error:
                    raise _error(error, batch, claimed[position[slot]]) from error
                totals[slot] += reward
                count = counts[slot]
                if terminated or truncated or count == limit:
                    returns[position[slot]] = totals[slot]
                    observed.finish(slot, count, position[slot])
                    if start(slot):
                        still.append(slot)
                    continue
                row = rows[slot]
                row[...] = obs
                buffer = buffers[slot]
                if count == len(buffer):
                    buffer = observed.grow(slot)
                buffer[count] = row
                counts[slot] = count + 1
                still.append(slot)
            running = still
        if observed is None:  # no episode claimed
            stats = ObsStats(np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)))
        else:
            stats = observed.results()
        results = EpisodeResults(np.array(returns, np.float64), stats.count.astype(np.int64), stats)
        return np.array(claimed, np.int64), results


def _error(error: Exception, batch: EpisodeBatch, index: int) -> RuntimeError:
    member, seed = batch.members[index], batch.seeds[index]
    return RuntimeError(f"{type(error).__name__}: {error} (member {member}, seed {seed})")


def run_batch(
    envs: Sequence[Any], act, batch: EpisodeBatch, limit: int | None = None
) -> EpisodeResults:
    """Every episode of ``batch`` in order, ``len(envs)`` at a time side by side (see
    ``LockStep``)."""
    indices = iter(range(len(batch.seeds)))
    _, results = LockStep(envs, act, limit).run(batch, lambda: next(indices, None))
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


def check_actions_fast(env: Any) -> None:
    """Gives ``env``'s ``Discrete`` action space (int64, Gymnasium's default) a fast path
    for the actions our policies give, NumPy int64 scalars: ``start <= action < start +
    n``, the answer of ``Discrete.contains`` for them, in 0.2 us instead of 2.3 us.

    Classic-control envs assert ``action_space.contains(action)`` on every step, a third
    of CartPole's step. Any other action, and any other space, is checked by Gymnasium's
    own code as before; the space is changed on this object only.
    """
    space = env.action_space
    if type(space) is not import_gymnasium().spaces.Discrete or space.dtype != np.int64:
        return
    contains, start, stop = space.contains, int(space.start), int(space.start + space.n)

    def fast_contains(action: Any) -> bool:
        if type(action) is np.int64:
            return bool(start <= action < stop)
        return contains(action)

    space.contains = fast_contains
