"""A pool of rollout worker processes that runs batches of episodes in parallel.

Episodes are cut into batches that shrink as a call proceeds, and each worker keeps one
queued beyond those it runs: it starts their episodes in envs that free up, so episodes of
uneven length (a Hopper that falls, one that runs) keep every core busy, and the workers
finish together. Results come back in episode order whatever worker ran them: with seeds
fixed by the caller, the outcome does not depend on the number of workers.

Failure handling: an env that raises gives a ``RolloutError`` naming the env id, member and
seed; a worker that dies (killed, out of memory, a crash in the simulator) gives one naming
the env id, the members and seeds it was running, and its exit code. Either way, and on
Ctrl-C, every worker is stopped before the error propagates: no process is left behind.
"""

import contextlib
import math
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import jax
import numpy as np

from es_toolkit._validate import check_optional_int
from es_toolkit.gym.episodes import EpisodeBatch, EpisodeResults
from es_toolkit.gym.worker import WorkerSpec, serve
from es_toolkit.policies import ObsStats

# Worker start-up (imports, env construction) can take a while on a loaded machine.
START_TIMEOUT_S = 120.0
# Batch sizes shrink as a call proceeds ("guided" scheduling): each batch takes this
# fraction of the episodes left per worker, so the first ones are large (few messages)
# and the last small (workers finish together)...
GUIDED_FRACTION = 0.5
# ...but at least this many env steps (judged by the last call's episodes), so that a
# message per batch stays cheap next to the steps.
MIN_BATCH_STEPS = 200
# Threads of numeric libraries in each worker: one core per worker, no oversubscription.
_SINGLE_THREAD = {
    name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
}


class RolloutError(RuntimeError):
    """An env raised or a rollout worker died; the pool is closed."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class RolloutPool:
    """Worker processes, each with its own env, running episodes of NumPy policies.

    Use as a context manager (or call ``close``)::

        with RolloutPool(WorkerSpec("HalfCheetah-v5", "linear", {})) as pool:
            results = pool.run(params, members, seeds)
    """

    def __init__(self, spec: WorkerSpec, num_workers: int | None = None):
        num_workers = check_optional_int("num_workers", num_workers, minimum=1)
        self.spec = spec
        self.num_workers = available_cores() if num_workers is None else num_workers
        self._workers: list[tuple[subprocess.Popen, Connection]] = []
        self._mean_length = float(MIN_BATCH_STEPS)  # until a call has measured episodes
        try:
            for _ in range(self.num_workers):
                self._workers.append(_start_worker(spec))
            for index in range(self.num_workers):
                status, detail = self._receive(index, lambda: "starting", START_TIMEOUT_S)
                if status != "ready":
                    raise RolloutError(f"a rollout worker for {spec.env_id} {detail}")
        except BaseException:
            self.close()
            raise

    def run(
        self,
        params: Any,
        members: Sequence[int],
        seeds: Sequence[int],
        obs_stats: ObsStats | None = None,
        rows: Sequence[int] | None = None,
    ) -> EpisodeResults:
        """Runs one episode per entry of ``members``/``seeds``, in parallel.

        Args:
            params: the policies, a pytree of arrays with a leading axis.
            members: for each episode, the member it belongs to (named in errors).
            seeds: for each episode, the seed its env is reset with.
            obs_stats: normalize observations with these statistics (or not, if None).
            rows: for each episode, its row of ``params`` (``members`` by default).

        Returns:
            ``EpisodeResults`` in the order of ``members``.
        """
        if not self._workers:
            raise RolloutError("the rollout pool is closed.")
        members = np.asarray(members, np.int64)
        seeds = np.asarray(seeds, np.int64)
        rows = members if rows is None else np.asarray(rows, np.int64)
        if not (members.shape == seeds.shape == rows.shape) or members.ndim != 1:
            raise ValueError(
                f"members, seeds and rows must be 1-D of one length, got shapes "
                f"{members.shape}, {seeds.shape} and {rows.shape}."
            )
        params = jax.tree.map(np.asarray, params)
        stats = None if obs_stats is None else jax.tree.map(np.asarray, obs_stats)
        batches = self._batches(len(members))
        results: list[EpisodeResults | None] = [None] * len(batches)
        try:
            self._dispatch(batches, results, params, rows, members, seeds, stats)
        except BaseException:
            self.close()
            raise
        lengths = np.concatenate([r.lengths for r in results])
        self._mean_length = max(1.0, float(lengths.mean()))
        return EpisodeResults(
            np.concatenate([r.returns for r in results]),
            lengths,
            jax.tree.map(lambda *parts: np.concatenate(parts), *[r.obs_stats for r in results]),
        )

    def _batches(self, episodes: int) -> list[slice]:
        """Consecutive slices of the episodes, shrinking (see ``GUIDED_FRACTION``)."""
        smallest = math.ceil(MIN_BATCH_STEPS / self._mean_length)
        batches, start = [], 0
        while start < episodes:
            left = episodes - start
            size = max(smallest, math.ceil(GUIDED_FRACTION * left / self.num_workers))
            batches.append(slice(start, start + size))
            start += size
        return batches

    def _dispatch(self, batches, results, params, rows, members, seeds, stats) -> None:
        queue = list(range(len(batches)))[::-1]
        # Per worker, the batches it holds (running or queued there).
        busy: dict[int, list[int]] = {w: [] for w in range(self.num_workers)}

        def send(worker: int) -> None:
            index = queue.pop()
            part = batches[index]
            needed, local_rows = _needed_rows(rows[part])
            batch = EpisodeBatch(
                jax.tree.map(lambda leaf: leaf[needed], params),
                local_rows,
                members[part],
                seeds[part],
                stats,
            )
            self._workers[worker][1].send((index, batch))
            busy[worker].append(index)

        for worker in range(self.num_workers):
            if queue:
                send(worker)
        while any(busy.values()):
            # A worker that dies closes its end of the socket: its connection turns readable.
            connections = {self._workers[w][1]: w for w, indices in busy.items() if indices}
            for worker in sorted(connections[ready] for ready in wait(list(connections))):
                status, *detail = self._receive(
                    worker,
                    lambda w=worker: _describe([batches[i] for i in busy[w]], members, seeds),
                )
                if status == "took":
                    # The worker started on its queued batch: queue the next one there, so
                    # that it never waits for the parent.
                    if queue:
                        send(worker)
                    continue
                if status != "ok":
                    raise RolloutError(f"{self.spec.env_id}: {detail[-1]}")
                index, episodes = detail
                busy[worker].remove(index)
                results[index] = episodes

    def _receive(
        self, worker: int, doing: Callable[[], str], timeout: float | None = None
    ) -> tuple[str, Any]:
        """The worker's next message; a dead or silent worker becomes an error message
        that says what it was ``doing()``."""
        process, connection = self._workers[worker]
        try:
            if connection.poll(timeout):
                return connection.recv()
        except (EOFError, OSError):
            pass
        try:
            code = process.wait(2.0)
        except subprocess.TimeoutExpired:
            return "error", f"did not answer within {timeout} s while {doing()}."
        return "error", f"a rollout worker died (exit code {code}) while {doing()}."

    def close(self) -> None:
        """Stops every worker (asks, then terminates stragglers); safe to call twice."""
        workers, self._workers = self._workers, []
        for _, connection in workers:
            with contextlib.suppress(OSError, ValueError):
                connection.send(None)
        for process, connection in workers:
            try:
                process.wait(2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            connection.close()

    def __enter__(self) -> "RolloutPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _start_worker(spec: WorkerSpec) -> tuple[subprocess.Popen, Connection]:
    """A worker process (a fresh interpreter: no fork of this JAX process, no re-import of
    the caller's main module) connected by a socket pair, told its spec."""
    parent_socket, child_socket = socket.socketpair()
    command = [sys.executable, "-c", f"from {serve.__module__} import main; main()"]
    process = subprocess.Popen(
        [*command, str(child_socket.fileno())],
        pass_fds=(child_socket.fileno(),),
        env={**os.environ, **_SINGLE_THREAD},
    )
    child_socket.close()
    connection = Connection(parent_socket.detach())
    connection.send(spec)
    return process, connection


def _needed_rows(rows: np.ndarray) -> tuple[slice | np.ndarray, np.ndarray]:
    """The rows of the parameters a batch needs (a slice when they are consecutive, as
    for one episode per member), and each episode's row among them."""
    if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        return slice(int(rows[0]), int(rows[0]) + len(rows)), np.arange(len(rows))
    return np.unique(rows, return_inverse=True)


def _describe(parts: list[slice], members: np.ndarray, seeds: np.ndarray) -> str:
    pairs = ", ".join(
        f"member {m} seed {s}"
        for part in parts
        for m, s in zip(members[part], seeds[part], strict=True)
    )
    return f"running {pairs}"
