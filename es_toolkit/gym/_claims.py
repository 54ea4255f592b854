"""The queue of a call's episodes that rollout workers share: a pipe of index ranges.

The parent writes every episode of a call into the pipe before it tells the workers to
start; whenever one of a worker's envs is free, the worker reads the next range off it.
A pipe hands each byte to exactly one reader and a read of a token takes it whole (the
kernel holds the pipe's lock for the read, and the tokens are all there before anyone
reads), so each episode runs exactly once, and the workers balance their load episode by
episode without a message to the parent. The read end is non-blocking: an empty pipe
means the call's episodes are all taken.
"""

import functools
import math
import os
import struct

# A token: the range [start, stop) of episode indices, as two little-endian uint32.
_TOKEN = struct.Struct("<II")
# At most this many tokens per call, 8 KiB: a write that fits any pipe's buffer (Linux
# 64 KiB, macOS 16 KiB) at once, so the parent never blocks on it. Larger calls put
# several consecutive episodes in a token.
MAX_TOKENS = 1024


def open_queue() -> tuple[int, int]:
    """A pipe ``(read_fd, write_fd)``; its read end does not block (and is inheritable,
    to pass to workers)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_inheritable(read_fd, True)
    return read_fd, write_fd


def put_episodes(write_fd: int, episodes: int) -> None:
    """Queues episodes ``0 .. episodes - 1``, one per token up to ``MAX_TOKENS`` of them."""
    tokens = _tokens(episodes)
    if os.write(write_fd, tokens) != len(tokens):  # a pipe writes all or blocks
        raise OSError("the episode queue took part of a write.")


@functools.lru_cache(maxsize=8)
def _tokens(episodes: int) -> bytes:
    """The queue's bytes for ``episodes`` episodes: the same for every call of a run, built
    once (packing 64 tokens costs more than the write)."""
    per_token = max(1, math.ceil(episodes / MAX_TOKENS))
    return b"".join(
        _TOKEN.pack(start, min(start + per_token, episodes))
        for start in range(0, episodes, per_token)
    )


class Claims:
    """A worker's view of the queue: ``claims()`` is the next episode index, or None once
    the queue is empty."""

    def __init__(self, read_fd: int):
        self.read_fd = read_fd
        self.next = self.stop = 0

    def __call__(self) -> int | None:
        if self.next == self.stop:
            try:
                token = os.read(self.read_fd, _TOKEN.size)
            except BlockingIOError:
                return None
            if len(token) != _TOKEN.size:
                raise OSError(f"the episode queue gave {len(token)} bytes of a token.")
            self.next, self.stop = _TOKEN.unpack(token)
        self.next += 1
        return self.next - 1
