"""Rollout workers: processes that run whole episodes of NumPy policies in Gymnasium envs.

A worker owns ``ENVS_PER_WORKER`` envs for its whole life and receives batches of
episodes: the policy parameters of the members concerned (NumPy arrays), the observation
statistics to normalize with, and one seed per episode. It sends back per-episode
returns, lengths and observation statistics. Whole episodes, never steps over the pipe:
for envs that step in microseconds, a round trip per step would cost more than the step.
Inside the worker its envs run side by side, so one NumPy forward pass serves all of
them; each episode's numbers stay those of its member alone.

The protocol over a socket wrapped in a ``multiprocessing`` connection: the parent sends a
``WorkerSpec``, then ``(tag, EpisodeBatch)`` pairs and finally ``None``; the worker answers
the spec with ``("ready", pid)``, each batch it takes with ``("took", tag)``, and each
batch, as it completes, with ``("ok", tag, EpisodeResults)`` or ``("error", message)``. It
takes a new batch whenever one of its envs has no episode left to start; the parent keeps
one queued there, sending the next on each ``"took"``. It exits on ``None`` or when the
parent's end of the pipe closes (so a parent that dies leaves no worker behind).
"""

import os
import select
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from es_toolkit.gym.env import make_env
from es_toolkit.gym.episodes import ENVS_PER_WORKER, LockStep, unwrap_bookkeeping
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


def serve(connection, spec: WorkerSpec) -> None:
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
    # The first batch steps the wrapped envs, so that Gymnasium's env checker sees them.
    lock_step = LockStep(envs, policy.numpy_apply)
    unwrapped = [unwrap_bookkeeping(env) for env in envs]
    later = LockStep([env for env, _ in unwrapped], policy.numpy_apply, unwrapped[0][1])
    # One poll object: Connection.poll builds a selector per call (~5 us against ~0.6 us).
    incoming = select.poll()
    incoming.register(connection.fileno(), select.POLLIN)
    try:
        while True:
            # Block for work when idle; take more as soon as an env runs out of it.
            if lock_step.idle or (lock_step.hungry and incoming.poll(0)):
                message = connection.recv()
                if message is None:
                    break
                lock_step.add(*message)
                connection.send(("took", message[0]))
            try:
                for tag, results in lock_step.step():
                    connection.send(("ok", tag, results))
                if lock_step.idle:
                    lock_step = later
            except Exception as error:
                lock_step.clear()
                connection.send(("error", str(error)))
    except (EOFError, OSError):
        pass
    finally:
        for env in envs:
            env.close()


def main() -> None:
    """Entry point of a worker process: ``python -c '...main()' FD`` (see ``pool.py``)."""
    connection = Connection(int(sys.argv[-1]))
    try:
        spec = connection.recv()
    except (EOFError, OSError):
        return
    serve(connection, spec)
