"""Which episode each rollout worker is running, in memory its parent reads when it dies.

A worker that dies (killed, out of memory, a crash in the simulator) sends no message; its
parent then reads the worker's row of this file to name the member and seed it was
running. A row is ``1 + envs`` int64: first what the worker is doing (the number of the
env it is resetting or stepping, ``ACTING`` or ``IDLE``), then the episode each env runs.
The worker writes one number per env step (a memoryview item) and two per episode; the
parent reads a row only when a worker died.
"""

import mmap
import os
import struct

from es_toolkit.gym._shared import open_file

ACTING = -1  # the policy's forward pass, for every running episode at once
IDLE = -2  # between calls, or before the first episode of one

_ITEM = struct.Struct("q")


def open_board(workers: int, envs: int) -> int:
    """A file of ``workers`` rows of ``IDLE``, as a descriptor workers inherit."""
    fd = open_file()
    os.pwrite(fd, _ITEM.pack(IDLE) * (workers * (1 + envs)), 0)
    return fd


def worker_row(fd: int, worker: int, envs: int) -> memoryview:
    """Worker ``worker``'s row of the file, mapped: what it writes, its parent reads."""
    start = worker * (1 + envs)
    return memoryview(mmap.mmap(fd, 0)).cast("q")[start : start + 1 + envs]


def local_row(envs: int) -> memoryview:
    """A row that no other process reads, for episodes run in this process."""
    row = memoryview(bytearray(_ITEM.size * (1 + envs))).cast("q")
    row[0] = IDLE
    return row


def running_episode(fd: int, worker: int, envs: int) -> int:
    """The index of the episode worker ``worker`` was resetting or stepping, or ``ACTING``
    or ``IDLE``."""
    start = worker * (1 + envs)
    row = struct.unpack(f"{1 + envs}q", os.pread(fd, _ITEM.size * (1 + envs), _ITEM.size * start))
    return row[0] if row[0] < 0 else row[1 + row[0]]
