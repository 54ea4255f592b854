"""Devices and hosts: meshes, the population sharded with ``jax.shard_map``, multi-host
start-up. The only module of es_toolkit that touches devices.

``shard(fn, mesh)`` runs ``fn`` on every device of a 1-D mesh (axis ``"pop"``) with every
argument replicated. While ``fn`` is traced, ``population_shard`` tells the estimators
which slice of the population this device owns: each device regenerates the noise of its
own members from the key (member ``i`` uses ``fold_in(key, i)``), evaluates them, and the
only values that cross devices are fitness scalars (all-gathered for rank shaping) and
d-sized partial sums of weighted noise (psum). Every device then computes the same update,
so the state stays replicated, and the result equals the single-device one up to float
rounding, whatever the number of devices.

Across hosts the mesh spans every process's devices (``initialize_distributed`` first);
each process evaluates only the members of its own devices.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from es_toolkit import population_shard
from es_toolkit._validate import check_int

AXIS = population_shard.AXIS
# Environment variables read by initialize_distributed when no argument is given.
ENV_COORDINATOR = "ES_TOOLKIT_COORDINATOR"
ENV_NUM_PROCESSES = "ES_TOOLKIT_NUM_PROCESSES"
ENV_PROCESS_ID = "ES_TOOLKIT_PROCESS_ID"
# Seconds without a heartbeat after which a process counts as dead and the others abort.
DEFAULT_HEARTBEAT_TIMEOUT_S = 20


def make_mesh(devices: int | Sequence[Any] | Mesh | None = None) -> Mesh:
    """A 1-D mesh with axis ``"pop"``.

    Args:
        devices: ``None`` for every device (of every process), an int ``n`` for the first
            ``n`` of them, a sequence of devices, or a ``Mesh`` (returned if it is 1-D
            with axis ``"pop"``).
    """
    if isinstance(devices, Mesh):
        if devices.axis_names != (AXIS,):
            raise ValueError(
                f"mesh must be 1-D with axis name {AXIS!r}, got axes {devices.axis_names}."
            )
        return devices
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, int) and not isinstance(devices, bool):
        check_int("devices", devices, minimum=1)
        if devices > len(available):
            raise ValueError(
                f"devices={devices} but only {len(available)} are available "
                f"({available[0].platform}); on a CPU, set XLA_FLAGS="
                f"--xla_force_host_platform_device_count={devices} before JAX starts."
            )
        chosen = available[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices must not be empty.")
    return Mesh(np.array(chosen), (AXIS,))


def shard(fn: Callable[..., Any], mesh: Mesh | int | Sequence[Any] | None) -> Callable[..., Any]:
    """``fn`` with its population sharded over ``mesh`` (see the module docstring).

    Every argument and output is replicated; jit the result at the outside. ``mesh=None``
    returns ``fn`` itself (no sharding), so callers can pass their ``mesh`` option on.
    """
    if mesh is None:
        return fn
    mesh = make_mesh(mesh)
    size = mesh.size

    def traced_on_each_device(*args):
        with population_shard.tracing(size):
            return fn(*args)

    return jax.shard_map(
        traced_on_each_device,
        mesh=mesh,
        in_specs=PartitionSpec(),
        out_specs=PartitionSpec(),
        check_vma=False,
    )


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 60,
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
) -> bool:
    """Joins this process to a multi-process JAX runtime (``jax.distributed``).

    Arguments default to the environment variables ``ES_TOOLKIT_COORDINATOR``
    (``host:port``), ``ES_TOOLKIT_NUM_PROCESSES`` and ``ES_TOOLKIT_PROCESS_ID``. With none
    of them set, does nothing and returns False (a single process). The coordinator (process
    0) binds only to the address given, never to every interface. A process that does not
    join within ``timeout_s`` seconds, or that dies later (no heartbeat for
    ``heartbeat_timeout_s`` seconds), makes the others fail with an error instead of hanging.
    """
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR)
    if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
        num_processes = int(os.environ[ENV_NUM_PROCESSES])
    if process_id is None and os.environ.get(ENV_PROCESS_ID):
        process_id = int(os.environ[ENV_PROCESS_ID])
    given = [coordinator_address, num_processes, process_id]
    if all(value is None for value in given):
        return False
    if any(value is None for value in given):
        raise ValueError(
            "multi-process start-up needs coordinator_address, num_processes and process_id "
            f"(or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); got "
            f"coordinator_address={coordinator_address!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}."
        )
    num_processes = check_int("num_processes", num_processes, minimum=1)
    process_id = check_int("process_id", process_id, minimum=0)
    if process_id >= num_processes:
        raise ValueError(f"process_id must be < num_processes={num_processes}, got {process_id}.")
    if ":" not in coordinator_address:
        raise ValueError(
            f"coordinator_address must be host:port, e.g. 127.0.0.1:12345, got "
            f"{coordinator_address!r}."
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        coordinator_bind_address=coordinator_address,
        initialization_timeout=timeout_s,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
    )
    return True


def process_share(total: int) -> tuple[int, int]:
    """``(start, count)`` of the ``total`` members this process evaluates on the host (in
    its rollout workers): all of them in a single process."""
    processes, index = jax.process_count(), jax.process_index()
    if total % processes:
        raise ValueError(
            f"{total} members do not split evenly over {processes} processes; choose a "
            f"population that is a multiple of {processes}."
        )
    count = total // processes
    return index * count, count


def gather_processes(tree: Any) -> Any:
    """Concatenates every process's host arrays along the leading axis, in process order
    (the arrays themselves in a single process)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def is_main_process() -> bool:
    """True on process 0, the one that writes logs and checkpoints."""
    return jax.process_index() == 0
