"""A pool of rollout worker processes that runs a call's episodes in parallel.

Each call's episodes go into a queue the workers share (``claims``); every worker's free
env takes the next one, so episodes of uneven length (a Hopper that falls, one that runs)
keep every core busy and the workers finish together, with two messages per worker and
call. Results come back in episode order whatever worker ran them: with seeds fixed by
the caller, the outcome does not depend on the number of workers.

Failure handling: an env that raises gives a ``RolloutError`` naming the env id, member and
seed; a worker that dies (killed, out of memory, a crash in the simulator) gives one naming
the env id, the episodes it had taken (members and seeds) and its exit code. Either way,
and on Ctrl-C, every worker is stopped before the error propagates: no process is left
behind.
"""

import contextlib
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import jax
import numpy as np

from es_toolkit._validate import check_optional_int
from es_toolkit.gym import claims, doorbell, shared
from es_toolkit.gym.episodes import EpisodeBatch, EpisodeResults
from es_toolkit.gym.worker import WorkerSpec, serve
from es_toolkit.policies import ObsStats

# Worker start-up (imports, env construction) can take a while on a loaded machine.
START_TIMEOUT_S = 120.0
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
        self._queue = claims.open_queue()
        self._bell = doorbell.open_bell()
        self._batch_fd = shared.open_file()
        self._sent: tuple[shared.Layout | None, bytes] = (None, b"")
        try:
            for _ in range(self.num_workers):
                fds = (self._queue[0], self._bell[0], self._batch_fd)
                self._workers.append(_start_worker(spec, *fds))
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
        if not len(members):
            raise ValueError("members must name at least one episode, got none.")
        stats = None if obs_stats is None else jax.tree.map(np.asarray, obs_stats)
        batch = EpisodeBatch(jax.tree.map(np.asarray, params), rows, members, seeds, stats)
        try:
            return self._run(batch)
        except BaseException:
            self.close()
            raise

    def _run(self, batch: EpisodeBatch) -> EpisodeResults:
        """Queues the batch's episodes, starts every worker on them and gathers what each
        ran; a worker that died is an error once the others have finished."""
        claims.put_episodes(self._queue[1], len(batch.seeds))
        # The whole batch goes into the shared file; the message is its layout, the same
        # bytes from call to call while the shapes stay.
        layout = shared.write(self._batch_fd, batch)
        if layout != self._sent[0]:
            self._sent = layout, pickle.dumps(layout, protocol=pickle.HIGHEST_PROTOCOL)
        data = self._sent[1]
        for _, connection in self._workers:
            connection.send_bytes(data)
        doorbell.ring(self._bell)
        done = np.zeros(len(batch.seeds), bool)
        parts, dead = [], []
        pending = {connection: w for w, (_, connection) in enumerate(self._workers)}
        while pending:
            for ready in wait(list(pending)):
                worker = pending.pop(ready)
                status, *detail = self._receive(worker, lambda: "running")
                if status == "died":
                    dead.append(detail[-1])
                elif status != "ok":
                    raise RolloutError(f"{self.spec.env_id}: {detail[-1]}")
                else:
                    parts.append(detail)
                    done[detail[0]] = True
        if dead:
            # The episodes no live worker finished are those the dead ones had taken.
            taken = _describe(np.flatnonzero(~done), batch.members, batch.seeds)
            raise RolloutError(f"{self.spec.env_id}: {dead[0]} {taken}.")
        return _gather(parts, len(batch.seeds))

    def _receive(
        self, worker: int, doing: Callable[[], str], timeout: float | None = None
    ) -> tuple[str, Any]:
        """The worker's next message; a silent worker becomes an ``"error"`` message and a
        dead one a ``"died"`` message, which say what it was ``doing()``."""
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
        return "died", f"a rollout worker died (exit code {code}) while {doing()}"

    def close(self) -> None:
        """Stops every worker (asks, then terminates stragglers); safe to call twice."""
        workers, self._workers = self._workers, []
        for _, connection in workers:
            with contextlib.suppress(OSError, ValueError):
                connection.send(None)
        # Closing the bell's write end wakes the workers to read the None.
        fds = (
            *getattr(self, "_queue", ()),
            *getattr(self, "_bell", ()),
            getattr(self, "_batch_fd", None),
        )
        self._queue, self._bell, self._batch_fd = (), (), None
        for fd in fds:
            if fd is not None:
                os.close(fd)
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


def _start_worker(
    spec: WorkerSpec, queue_fd: int, bell_fd: int, batch_fd: int
) -> tuple[subprocess.Popen, Connection]:
    """A worker process (a fresh interpreter: no fork of this JAX process, no re-import of
    the caller's main module) connected by a socket pair, told its spec, reading the
    episode queue ``queue_fd``, woken by ``bell_fd`` and reading each call's batch in
    ``batch_fd``."""
    parent_socket, child_socket = socket.socketpair()
    command = [sys.executable, "-c", f"from {serve.__module__} import main; main()"]
    fds = (child_socket.fileno(), queue_fd, bell_fd, batch_fd)
    process = subprocess.Popen(
        [*command, *(str(fd) for fd in fds)],
        pass_fds=fds,
        env={**os.environ, **_SINGLE_THREAD},
    )
    child_socket.close()
    connection = Connection(parent_socket.detach())
    connection.send(spec)
    return process, connection


def _gather(parts: list[tuple[np.ndarray, EpisodeResults]], episodes: int) -> EpisodeResults:
    """The workers' results, each ``(indices, results)``, in episode order."""
    order = np.argsort(np.concatenate([indices for indices, _ in parts]), kind="stable")
    ran = [results for indices, results in parts if len(indices)]
    if len(order) != episodes:
        raise RolloutError(f"the workers ran {len(order)} of {episodes} episodes.")
    return jax.tree.map(lambda *leaves: np.concatenate(leaves)[order], *ran)


def _describe(indices: np.ndarray, members: np.ndarray, seeds: np.ndarray) -> str:
    if not len(indices):
        return "no episode"
    return ", ".join(f"member {members[i]} seed {seeds[i]}" for i in indices)
