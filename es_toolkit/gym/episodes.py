"""Episodes of NumPy policies in Gymnasium envs, several envs side by side.

A ``LockStep`` keeps one episode running in each of its envs. Each step, one call of the
policy's NumPy forward pass (``Policy.numpy_apply`` on the stacked parameters and
observations of the running episodes) picks every env's next action: for a fast env the
few NumPy calls of a forward pass would otherwise cost as much as the step. An env that
finishes an episode claims the next one (from a queue that rollout workers share, see
``_claims``), so the envs stay busy until the queue is empty. Each episode's numbers are
those of its member alone, whichever episodes run beside it (see ``numpy_matmul``; tested
bit for bit).
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from es_toolkit.gym import _running
from es_toolkit.gym.env import import_gymnasium
from es_toolkit.policies import ObsStats
from es_toolkit.policies._numpy import numpy_normalizer

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


class EpisodeError(RuntimeError):
    """An env or the policy raised during an episode; names the member and seed."""

    def __init__(self, error: Exception, member: int, seed: int):
        super().__init__(f"{type(error).__name__}: {error} ({episode_label(member, seed)})")
        self.member, self.seed = int(member), int(seed)


def episode_label(member: int, seed: int) -> str:
    """How errors name an episode."""
    return f"member {member}, seed {seed}"


class _Slot:
    """One env of a ``LockStep`` run and the episode running in it."""

    __slots__ = ("buffer", "env", "index", "number", "position", "row", "seen", "step", "total")

    def __init__(self, number: int, env: Any):
        self.number, self.env, self.step = number, env, env.step
        self.row: np.ndarray  # this env's row of the policy's input
        self.buffer: np.ndarray  # the episode's observations so far, in its first rows
        self.index = 0  # the episode's index in the batch
        self.position = 0  # the episode's position in the order claimed
        self.seen = 0  # observations of the episode so far
        self.total = 0.0  # the episode's return so far

    def record(self, obs: Any) -> None:
        """Adds ``obs``, the episode's next observation, to its row and its buffer."""
        row = self.row
        row[...] = obs
        buffer = self.buffer
        if self.seen == len(buffer):
            grown = np.empty((2 * len(buffer), *buffer.shape[1:]), np.float32)
            grown[: len(buffer)] = buffer
            self.buffer = buffer = grown
        buffer[self.seen] = row
        self.seen += 1


class _Observations:
    """The observations of finished episodes, reduced to statistics (``episode_stats``)
    ``REDUCE_EVERY`` episodes at a time: memory stays bounded by that many episodes."""

    def __init__(self):
        self.finished: list[np.ndarray] = []  # rows of each finished, unreduced episode
        self.positions: list[int] = []  # in the order started, of those episodes
        self.reduced: list[tuple[np.ndarray, ...]] = []  # (positions, count, mean, m2)

    def finish(self, rows: np.ndarray, position: int) -> None:
        """An episode, started ``position``th, ended with observations ``rows`` (copied)."""
        self.finished.append(rows.copy())
        self.positions.append(position)
        if len(self.finished) >= REDUCE_EVERY:
            self.reduce()

    def reduce(self) -> None:
        if self.finished:
            self.reduced.append((np.array(self.positions), *episode_stats(self.finished)))
            self.finished, self.positions = [], []

    def results(self) -> ObsStats:
        """Every finished episode's statistics, stacked in the order started (none for no
        episode)."""
        self.reduce()
        if not self.reduced:
            return ObsStats(np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)))
        positions, *stats = (np.concatenate(field) for field in zip(*self.reduced, strict=True))
        order = np.argsort(positions)
        return ObsStats(*(field[order] for field in stats))


class _Run:
    """One ``LockStep.run``: its slots, the parameters and observations the policy gets
    (a row per slot), and the episodes claimed so far with their returns."""

    def __init__(self, envs: Sequence[Any], batch: EpisodeBatch, claim, board: memoryview):
        self.batch, self.claim, self.board = batch, claim, board
        self.slots = [_Slot(number, env) for number, env in enumerate(envs)]
        self.leaves, treedef = jax.tree.flatten(batch.params)
        self.stacked = [np.zeros((len(envs), *leaf.shape[1:]), leaf.dtype) for leaf in self.leaves]
        self.params = jax.tree.unflatten(treedef, self.stacked)
        self.observations: np.ndarray | None = None  # as float32, made at the first reset
        self.observed = _Observations()
        self.claimed: list[int] = []
        self.returns: list[float] = []
        self.exhausted = False

    def start(self, slot: _Slot) -> bool:
        """Starts the next claimed episode in ``slot``; False if none is left."""
        index = None if self.exhausted else self.claim()
        if index is None:
            self.exhausted = True
            return False
        batch, number = self.batch, slot.number
        member_row = batch.rows[index]
        for stack, leaf in zip(self.stacked, self.leaves, strict=True):
            stack[number] = leaf[member_row]
        slot.index, slot.position = index, len(self.claimed)
        self.claimed.append(index)
        self.returns.append(0.0)
        self.board[1 + number] = index
        self.board[0] = number
        try:
            obs, _ = slot.env.reset(seed=int(batch.seeds[index]))
        except Exception as error:
            raise self.error(error, slot) from error
        if self.observations is None:
            self.allocate(np.shape(obs))
        slot.seen, slot.total = 0, 0.0
        slot.record(obs)
        return True

    def allocate(self, shape: tuple[int, ...]) -> None:
        """The policy's input and each slot's first buffer, for observations of ``shape``."""
        self.observations = np.zeros((len(self.slots), *shape), np.float32)
        for slot, row in zip(self.slots, self.observations, strict=True):
            slot.row, slot.buffer = row, np.empty((64, *shape), np.float32)

    def finish(self, slot: _Slot) -> None:
        """Records the return and observations of the episode that ended in ``slot``."""
        self.returns[slot.position] = slot.total
        self.observed.finish(slot.buffer[: slot.seen], slot.position)

    def error(self, error: Exception, slot: _Slot) -> EpisodeError:
        index = slot.index
        return EpisodeError(error, self.batch.members[index], self.batch.seeds[index])

    def results(self) -> tuple[np.ndarray, EpisodeResults]:
        stats = self.observed.results()
        returns = np.array(self.returns, np.float64)
        return np.array(self.claimed, np.int64), EpisodeResults(
            returns, stats.count.astype(np.int64), stats
        )


class LockStep:
    """``envs`` stepped side by side over the episodes of a batch.

    ``run`` starts an episode in every free env, steps every running episode once per
    step of the loop, and ends an episode when terminated, truncated (the env's time
    limit) or after ``limit`` steps. An error of the env or the policy is an
    ``EpisodeError`` naming the member and seed. ``board`` (see ``_running``) is where it
    notes the episode it is stepping, for a parent to read should this process die.
    """

    def __init__(
        self, envs: Sequence[Any], act, limit: int | None = None, board: memoryview | None = None
    ):
        self.envs, self.act, self.limit = list(envs), act, limit
        self.board = _running.local_row(len(self.envs)) if board is None else board
        if len(self.board) != 1 + len(self.envs):
            raise ValueError(f"board must hold {1 + len(self.envs)} items, got {len(self.board)}.")

    def run(
        self, batch: EpisodeBatch, claim: Callable[[], int | None]
    ) -> tuple[np.ndarray, EpisodeResults]:
        """Runs the episodes of ``batch`` that ``claim()`` hands out, one whenever an env
        is free, until it returns None and the last of them ended.

        Returns:
            The indices of the episodes run, in the order claimed, and their results in
            that order.
        """
        act, limit, board = self.act, self.limit, self.board
        board[0] = _running.IDLE
        run = _Run(self.envs, batch, claim, board)
        running = [slot for slot in run.slots if run.start(slot)]
        if running:
            params, observations = run.params, run.observations
            normalize = numpy_normalizer(batch.obs_stats).shaped(observations.shape)
        while running:
            board[0] = _running.ACTING
            try:
                actions = act(params, normalize(observations))
            except Exception as error:
                raise run.error(error, running[0]) from error
            still = []
            for slot in running:
                board[0] = slot.number
                try:
                    obs, reward, terminated, truncated, _ = slot.step(actions[slot.number])
                except Exception as error:
                    raise run.error(error, slot) from error
                slot.total += reward
                if terminated or truncated or slot.seen == limit:
                    run.finish(slot)
                    if run.start(slot):
                        still.append(slot)
                    continue
                slot.record(obs)
                still.append(slot)
            running = still
        board[0] = _running.IDLE
        return run.results()


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
    ``LockStep``: the episodes are the same, and a step costs less.
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
    n``, the answer of ``Discrete.contains`` for them, without its general checks.

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
