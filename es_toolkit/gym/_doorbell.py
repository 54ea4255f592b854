"""How the parent wakes its rollout workers for a call: one write that wakes them all.

Woken one by one through their own sockets, the first worker woken could take the parent's
CPU before the parent had woken the next, which then started up to a scheduler tick late
(docs/benchmarks.md, "Gymnasium rollout workers", has the numbers); workers that sleep on
one pipe the parent writes a byte to start together.

So on Linux a worker sleeps on that pipe (edge-triggered ``epoll``; its socket only for
hang-ups) and the parent rings it after it has queued the call's episodes and sent every
worker its message. Elsewhere a worker sleeps on its socket, as before.
"""

import contextlib
import os
import select
from multiprocessing.connection import Connection

_EPOLL = hasattr(select, "epoll")


def open_bell() -> tuple[int, int]:
    """A pipe ``(read_fd, write_fd)``: workers watch the read end (inheritable, to pass to
    them); the parent writes to the write end and keeps the read end, to empty it."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_inheritable(read_fd, True)
    return read_fd, write_fd


def ring(bell: tuple[int, int]) -> None:
    """Wakes every worker watching ``bell`` (each call's messages must be sent first)."""
    read_fd, write_fd = bell
    # Emptied of earlier rings: the pipe never fills, and each ring is an edge.
    with contextlib.suppress(BlockingIOError):
        os.read(read_fd, 4096)
    os.write(write_fd, b"\0")


class Doorbell:
    """A worker's wait for the parent's next message (see the module docstring)."""

    def __init__(self, read_fd: int, connection: Connection):
        self.connection = connection
        self.epoll = select.epoll() if _EPOLL else None
        if self.epoll is not None:
            self.epoll.register(read_fd, select.EPOLLIN | select.EPOLLET)
            self.epoll.register(connection.fileno(), select.EPOLLRDHUP)

    def wait(self) -> None:
        """Returns once the parent's next message is there, or the parent has gone (then
        the connection ends)."""
        if self.epoll is None:
            self.connection.poll(None)
            return
        gone = select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
        # A ring for a message already taken (the worker came back late and found it
        # there) wakes it with no message: it sleeps again.
        while not self.connection.poll(0):
            if any(mask & gone for _, mask in self.epoll.poll()):
                return
