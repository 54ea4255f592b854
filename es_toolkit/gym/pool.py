"""A pool of rollout worker processes that runs a call's episodes in parallel.

Each call's episodes go into a queue the workers share (``_claims``); every worker's free
env takes the next one, so episodes of uneven length (a Hopper that falls, one that runs)
keep every core busy and the workers finish together, with two messages per worker and
call. Results come back in episode order whatever worker ran them: with seeds fixed by
the caller, the outcome does not depend on the number of workers.

Failure handling: an env that raises gives a ``RolloutError`` naming the env id, member and
seed; a worker that dies (killed, out of memory, a crash in the simulator) gives one naming
the env id, the worker, its exit code and the member and seed it was running (read from
its row of the board, ``_running``). The pool watches each worker's process as well as
its socket, so a death is an error at once, not once the other workers have finished.
Either way, and on Ctrl-C, every worker is stopped before the error propagates: no
process is left behind.
"""

import contextlib
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, NamedTuple

import jax
import numpy as np

from es_toolkit._validate import check_optional_int
from es_toolkit.gym import _claims, _doorbell, _running, _shared, _worker
from es_toolkit.gym._protocol import Done, Failed, Ready, Run, Stop, WorkerSpec
from es_toolkit.gym.episodes import ENVS_PER_WORKER, EpisodeBatch, EpisodeResults, episode_label
from es_toolkit.policies import ObsStats

# Worker start-up (imports, env construction) can take a while on a loaded machine.
START_TIMEOUT_S = 120.0
# How long ``close`` lets workers exit on their own before it kills them.
EXIT_GRACE_S = 2.0
# Threads of numeric libraries in each worker: one core per worker, no oversubscription.
_SINGLE_THREAD = {
    name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
}
# Pickled once: ``close`` may run while the interpreter shuts down, when pickling a class
# (which imports its module) fails.
_STOP = pickle.dumps(Stop(), protocol=pickle.HIGHEST_PROTOCOL)


class RolloutError(RuntimeError):
    """An env raised or a rollout worker died; the pool is closed."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Worker(NamedTuple):
    process: subprocess.Popen
    connection: Connection
    exited: int | None  # a descriptor readable once the process exited (Linux), or None


class RolloutPool:
    """Worker processes, each with its own env, running episodes of NumPy policies.

    Use as a context manager (or call ``close``)::

        with RolloutPool(WorkerSpec("HalfCheetah-v5", "linear", {})) as pool:
            results = pool.run(params, members, seeds)
    """

    def __init__(self, spec: WorkerSpec, num_workers: int | None = None):
        self._workers: list[_Worker] = []
        self._fds: tuple[int, ...] = ()  # every descriptor ``close`` closes
        num_workers = check_optional_int("num_workers", num_workers, minimum=1)
        self.spec = spec
        self.num_workers = available_cores() if num_workers is None else num_workers
        self._queue = _claims.open_queue()
        self._bell = _doorbell.open_bell()
        self._batch_fd = _shared.open_file()
        self._board_fd = _running.open_board(self.num_workers, ENVS_PER_WORKER)
        self._fds = (*self._queue, *self._bell, self._batch_fd, self._board_fd)
        self._sent: tuple[_shared.Layout | None, bytes] = (None, b"")
        try:
            for index in range(self.num_workers):
                fds = (self._queue[0], self._bell[0], self._batch_fd, self._board_fd)
                self._workers.append(_start_worker(spec, index, *fds))
            for message in self._collect(lambda worker: "starting", START_TIMEOUT_S):
                if not isinstance(message, Ready):
                    raise RolloutError(f"{spec.env_id}: unexpected answer {message!r}.")
        except BaseException:
            self._stop(0.0)
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
            self._stop(0.0)
            raise

    def _run(self, batch: EpisodeBatch) -> EpisodeResults:
        """Queues the batch's episodes, starts every worker on them and gathers what each
        ran."""
        _claims.put_episodes(self._queue[1], len(batch.seeds))
        # The whole batch goes into the shared file; the message is its layout, the same
        # bytes from call to call while the shapes stay.
        layout = _shared.write(self._batch_fd, batch)
        if layout != self._sent[0]:
            self._sent = layout, pickle.dumps(Run(layout), protocol=pickle.HIGHEST_PROTOCOL)
        data = self._sent[1]
        for index, worker in enumerate(self._workers):
            try:
                worker.connection.send_bytes(data)
            except OSError:
                raise self._died(index, lambda index: "idle") from None
        _doorbell.ring(self._bell)
        parts = self._collect(lambda index: self._running(index, batch))
        return _gather(parts, len(batch.seeds))

    def _collect(self, doing: Callable[[int], str], timeout: float | None = None) -> list:
        """One message from each worker, in worker order. A worker that failed, died or
        stayed silent for ``timeout`` seconds is a ``RolloutError`` at once, which says
        what it was ``doing(index)``."""
        messages: list = [None] * len(self._workers)
        watched = {}
        for index, worker in enumerate(self._workers):
            watched[worker.connection] = index
            if worker.exited is not None:
                watched[worker.exited] = index
        deadline = None if timeout is None else time.monotonic() + timeout
        while watched:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(list(watched), left)
            if not ready:
                index = min(watched.values())
                raise RolloutError(
                    f"{self._name(index)} did not answer within {timeout} s while {doing(index)}."
                )
            for handle in ready:
                index = watched.get(handle)
                if index is None:  # its other handle was ready too
                    continue
                message = self._receive(index, doing)
                if isinstance(message, Failed):
                    raise RolloutError(f"{self.spec.env_id}: {message.message}")
                messages[index] = message
                watched = {key: value for key, value in watched.items() if value != index}
        return messages

    def _receive(self, index: int, doing: Callable[[int], str]) -> Any:
        """Worker ``index``'s message, which is there or never will be: the worker
        died (``RolloutError``)."""
        connection = self._workers[index].connection
        try:
            if connection.poll(0):
                return connection.recv()
        except (EOFError, OSError):
            pass
        raise self._died(index, doing)

    def _died(self, index: int, doing: Callable[[int], str]) -> RolloutError:
        """The error for worker ``index``, whose process ended or is ending."""
        try:
            code = self._workers[index].process.wait(EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            return RolloutError(f"{self._name(index)} closed its socket while {doing(index)}.")
        return RolloutError(f"{self._name(index)} died (exit code {code}) while {doing(index)}.")

    def _name(self, index: int) -> str:
        pid = self._workers[index].process.pid
        return f"{self.spec.env_id}: rollout worker {index} (pid {pid})"

    def _running(self, index: int, batch: EpisodeBatch) -> str:
        """What worker ``index`` was doing in a call of ``batch``, by its board row."""
        episode = _running.running_episode(self._board_fd, index, ENVS_PER_WORKER)
        if episode == _running.ACTING:
            return "computing the actions of its episodes"
        if episode == _running.IDLE or not 0 <= episode < len(batch.seeds):
            return "between episodes"
        return f"running {episode_label(batch.members[episode], batch.seeds[episode])}"

    def close(self) -> None:
        """Stops every worker (asks, then kills those still running after
        ``EXIT_GRACE_S``); safe to call twice, and on a pool whose start failed."""
        self._stop(EXIT_GRACE_S)

    def _stop(self, grace_s: float) -> None:
        """Asks every worker to stop, waits ``grace_s`` seconds in all, kills the rest."""
        workers, self._workers = getattr(self, "_workers", []), []
        fds, self._fds = getattr(self, "_fds", ()), ()
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):
                worker.connection.send_bytes(_STOP)
        # Closing the bell's write end wakes the workers to read the ``Stop``.
        for fd in fds:
            os.close(fd)
        deadline = time.monotonic() + grace_s
        for worker in workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.connection.close()
            if worker.exited is not None:
                os.close(worker.exited)

    def __enter__(self) -> "RolloutPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _start_worker(
    spec: WorkerSpec, index: int, queue_fd: int, bell_fd: int, batch_fd: int, board_fd: int
) -> _Worker:
    """Worker ``index``: a fresh interpreter (no fork of this JAX process, no re-import of
    the caller's main module) connected by a socket pair, told its spec, reading the
    episode queue ``queue_fd``, woken by ``bell_fd``, reading each call's batch in
    ``batch_fd`` and writing where it is in its row of ``board_fd``."""
    parent_socket, child_socket = socket.socketpair()
    command = [sys.executable, "-c", f"from {_worker.__name__} import main; main()"]
    fds = (child_socket.fileno(), queue_fd, bell_fd, batch_fd, board_fd)
    process = subprocess.Popen(
        [*command, str(index), *(str(fd) for fd in fds)],
        pass_fds=fds,
        env={**os.environ, **_SINGLE_THREAD},
    )
    child_socket.close()
    connection = Connection(parent_socket.detach())
    connection.send(spec)
    return _Worker(process, connection, _exit_handle(process.pid))


def _exit_handle(pid: int) -> int | None:
    """A descriptor that becomes readable when process ``pid`` exits, where the system
    has them (Linux 5.3 and later)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _gather(parts: list[Done], episodes: int) -> EpisodeResults:
    """The workers' results, each ``Done(indices, results)``, in episode order."""
    order = np.argsort(np.concatenate([part.indices for part in parts]), kind="stable")
    ran = [part.results for part in parts if len(part.indices)]
    if len(order) != episodes:
        raise RolloutError(f"the workers ran {len(order)} of {episodes} episodes.")
    return jax.tree.map(lambda *leaves: np.concatenate(leaves)[order], *ran)
