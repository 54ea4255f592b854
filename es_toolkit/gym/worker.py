"""Rollout workers: processes that run whole episodes of NumPy policies in Gymnasium envs.

A worker owns ``ENVS_PER_WORKER`` envs for its whole life. For each call it reads the
call's ``EpisodeBatch`` (the members' parameters, the observation statistics to
normalize with and one seed per episode) in place from the file the parent wrote it to
(see ``shared``; the message says where in the file) and runs the episodes it claims
from the queue the workers share (``claims``), one whenever one of its envs is free;
once the queue is empty and its last episode ended, it sends back their indices and
per-episode returns, lengths and observation statistics. Whole episodes, never steps
over the pipe: for envs that step in microseconds, a round trip per step would cost more
than the step. Inside the worker its envs run side by side, so one NumPy forward pass
serves all of them; each episode's numbers stay those of its member alone.

The protocol over a socket wrapped in a ``multiprocessing`` connection: the parent sends a
``WorkerSpec``, then the layout of an ``EpisodeBatch`` per call (and wakes every worker at
once, see ``doorbell``) and finally ``None``; the worker answers the spec with
``("ready", pid)`` and each batch with ``("ok", indices, EpisodeResults)`` or
``("error", message)``. It exits on ``None`` or when the parent's end of the pipe
closes (so a parent that dies leaves no worker behind).
"""

import os
import pickle
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from es_toolkit.gym import shared
from es_toolkit.gym.claims import Claims
from es_toolkit.gym.doorbell import Doorbell
from es_toolkit.gym.env import make_env
from es_toolkit.gym.episodes import (
    ENVS_PER_WORKER,
    LockStep,
    check_actions_fast,
    unwrap_bookkeeping,
)
from es_toolkit.policies import make_policy


class WorkerSpec(NamedTuple):
    """What every worker builds once: the env and the policy's NumPy forward pass."""

    env_id: str
    policy_kind: str
    policy_options: dict[str, Any]
    max_episode_steps: int | None = None


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


def serve(
    connection: Connection,
    claims: Callable[[], int | None],
    doorbell: Doorbell,
    batch_fd: int,
    spec: WorkerSpec,
) -> None:
    """The worker process's main loop (see the module docstring)."""
    # Ctrl-C goes to the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        envs = make_envs(spec, ENVS_PER_WORKER)
        policy = make_policy(
            spec.policy_kind, envs[0].observation_space, envs[0].action_space, **spec.policy_options
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
    # The first call steps the wrapped envs, so that Gymnasium's env checker sees them.
    lock_step = LockStep(envs, policy.numpy_apply)
    unwrapped = [unwrap_bookkeeping(env) for env in envs]
    for env, _ in unwrapped:
        check_actions_fast(env)
    later = LockStep([env for env, _ in unwrapped], policy.numpy_apply, unwrapped[0][1])
    try:
        received = (b"", None)  # the last message and its layout
        while True:
            doorbell.wait()
            if (data := connection.recv_bytes()) != received[0]:
                received = data, pickle.loads(data)
            if (layout := received[1]) is None:
                break
            try:
                batch = shared.read(batch_fd, layout)
                connection.send(("ok", *lock_step.run(batch, claims)))
            except Exception as error:
                connection.send(("error", str(error)))
            lock_step = later
    except (EOFError, OSError):
        pass
    finally:
        for env in envs:
            env.close()


def main() -> None:
    """Entry point of a worker process: ``python -c '...main()' SOCKET_FD QUEUE_FD
    BELL_FD BATCH_FD`` (see ``pool.py``)."""
    socket_fd, queue_fd, bell_fd, batch_fd = (int(arg) for arg in sys.argv[-4:])
    connection = Connection(socket_fd)
    try:
        spec = connection.recv()
    except (EOFError, OSError):
        return
    serve(connection, Claims(queue_fd), Doorbell(bell_fd, connection), batch_fd, spec)
