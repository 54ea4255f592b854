"""How idle rollout workers sleep and wake (``es_toolkit.gym._doorbell``)."""

import os
import select
import socket
import threading
from multiprocessing.connection import Connection

import pytest

from es_toolkit.gym import _doorbell


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="workers sleep on sockets here")
def test_doorbell_wakes_a_worker_for_each_ring_not_for_messages():
    bell = _doorbell.open_bell()
    parent_end, worker_end = (Connection(end.detach()) for end in socket.socketpair())
    doorbell = _doorbell.Doorbell(bell[0], worker_end)

    def waiting() -> threading.Thread:
        thread = threading.Thread(target=doorbell.wait, daemon=True)
        thread.start()
        thread.join(0.2)
        return thread

    try:
        thread = waiting()
        parent_end.send("first")
        thread.join(0.2)
        assert thread.is_alive()  # a message alone does not wake it
        _doorbell.ring(bell)
        thread.join(5.0)
        assert not thread.is_alive()
        assert worker_end.recv() == "first"
        # A worker back late finds the message there; the ring it missed wakes it later
        # with no message, and it sleeps on.
        parent_end.send("second")
        _doorbell.ring(bell)
        doorbell.wait()
        assert worker_end.recv() == "second"
        thread = waiting()
        assert thread.is_alive()
        parent_end.send("third")
        _doorbell.ring(bell)
        thread.join(5.0)
        assert not thread.is_alive()
        assert worker_end.recv() == "third"
        # The parent gone: it wakes, and the connection ends.
        thread = waiting()
        parent_end.close()
        os.close(bell[1])
        thread.join(5.0)
        assert not thread.is_alive()
        with pytest.raises(EOFError):
            worker_end.recv()
    finally:
        os.close(bell[0])
        worker_end.close()
