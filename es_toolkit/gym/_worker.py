"""Rollout workers: processes that run whole episodes of NumPy policies in Gymnasium envs.

A worker owns ``ENVS_PER_WORKER`` envs for its whole life. For each call it reads the
call's ``EpisodeBatch`` (the members' parameters, the observation statistics to
normalize with and one seed per episode) in place from the file the parent wrote it to
(see ``_shared``; the ``Run`` message says where in the file) and runs the episodes it
claims from the queue the workers share (``_claims``), one whenever one of its envs is
free; once the queue is empty and its last episode ended, it sends back their indices and
per-episode returns, lengths and observation statistics. Whole episodes, never steps
over the pipe: for envs that step in microseconds, a round trip per step would cost more
than the step. Inside the worker its envs run side by side, so one NumPy forward pass
serves all of them; each episode's numbers stay those of its member alone. It notes the
episode it is stepping on its row of the board (``_running``), for the parent to name
should it die.

The messages are those of ``_protocol``; the parent wakes every worker at once for a call
(``_doorbell``). A worker exits on ``Stop`` or when the parent's end of the socket closes
(so a parent that dies leaves no worker behind).
"""

import os
import pickle
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from es_toolkit.gym import _running, _shared
from es_toolkit.gym._claims import Claims
from es_toolkit.gym._doorbell import Doorbell
from es_toolkit.gym._protocol import Done, Failed, Ready, Stop, WorkerSpec
from es_toolkit.gym.env import make_env
from es_toolkit.gym.episodes import (
    ENVS_PER_WORKER,
    EpisodeError,
    LockStep,
    check_actions_fast,
    unwrap_bookkeeping,
)
from es_toolkit.policies import make_policy


def make_envs(spec: WorkerSpec, count: int) -> list[Any]:
    """``count`` envs of ``spec``; what building one prints on stderr (MuJoCo's
    deprecation warnings) shows once, not ``count`` times."""
    envs = [make_env(spec.env_id, max_episode_steps=spec.max_episode_steps)]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            envs += [
                make_env(spec.env_id, max_episode_steps=spec.max_episode_steps)
                for _ in range(count - 1)
            ]
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    return envs


def numpy_forward_pass(spec: WorkerSpec, env: Any) -> Callable:
    """The NumPy forward pass of ``spec``'s policy for ``env``'s spaces."""
    policy = make_policy(
        spec.policy_kind, env.observation_space, env.action_space, **spec.policy_options
    )
    if policy.numpy_apply is None:
        raise ValueError(
            f"the {spec.policy_kind} policy with options {spec.policy_options} has no "
            "NumPy forward pass (a custom activation function?); use a named activation."
        )
    return policy.numpy_apply


def serve(
    connection: Connection,
    claims: Callable[[], int | None],
    doorbell: Doorbell,
    batch_fd: int,
    board: memoryview,
    spec: WorkerSpec,
) -> None:
    """The worker process's main loop (see the module docstring)."""
    # Ctrl-C goes to the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        envs = make_envs(spec, ENVS_PER_WORKER)
        act = numpy_forward_pass(spec, envs[0])
    except Exception as error:
        connection.send(Failed(f"could not start: {type(error).__name__}: {error}"))
        return
    connection.send(Ready(os.getpid()))
    # The first call steps the wrapped envs, so that Gymnasium's env checker sees them.
    lock_step = LockStep(envs, act, board=board)
    unwrapped = [unwrap_bookkeeping(env) for env in envs]
    for env, _ in unwrapped:
        check_actions_fast(env)
    later = LockStep([env for env, _ in unwrapped], act, unwrapped[0][1], board)
    try:
        received = (b"", None)  # the last message and what it says
        while True:
            doorbell.wait()
            if (data := connection.recv_bytes()) != received[0]:
                received = data, pickle.loads(data)
            if isinstance(message := received[1], Stop):
                break
            connection.send(run_call(lock_step, message.layout, batch_fd, claims))
            lock_step = later
    except (EOFError, OSError):
        pass
    finally:
        for env in envs:
            env.close()


def run_call(
    lock_step: LockStep, layout: _shared.Layout, batch_fd: int, claims: Callable[[], int | None]
) -> Done | Failed:
    """The answer to a ``Run``: what the worker ran of the batch at ``layout``."""
    try:
        return Done(*lock_step.run(_shared.read(batch_fd, layout), claims))
    except EpisodeError as error:
        return Failed(str(error), error.member, error.seed)
    except Exception as error:
        return Failed(f"{type(error).__name__}: {error}")


def main() -> None:
    """Entry point of a worker process: ``python -c '...main()' WORKER SOCKET_FD QUEUE_FD
    BELL_FD BATCH_FD BOARD_FD`` (see ``pool.py``)."""
    worker, socket_fd, queue_fd, bell_fd, batch_fd, board_fd = (int(arg) for arg in sys.argv[-6:])
    connection = Connection(socket_fd)
    try:
        spec = connection.recv()
    except (EOFError, OSError):
        return
    board = _running.worker_row(board_fd, worker, ENVS_PER_WORKER)
    serve(connection, Claims(queue_fd), Doorbell(bell_fd, connection), batch_fd, board, spec)
