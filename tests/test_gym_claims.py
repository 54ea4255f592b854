"""The queue of a call's episodes that rollout workers share (``es_toolkit.gym._claims``)."""

import os

import pytest

from es_toolkit.gym import _claims


@pytest.mark.parametrize("episodes", [0, 1, 5, 1024, 1025, 5000])
def test_episode_queue_hands_out_every_episode_exactly_once(episodes):
    read_fd, write_fd = _claims.open_queue()
    try:
        _claims.put_episodes(write_fd, episodes)
        readers = [_claims.Claims(read_fd), _claims.Claims(read_fd)]
        taken = [[], []]
        while True:  # two readers taking turns, as two workers would
            got = [reader() for reader in readers]
            for mine, index in zip(taken, got, strict=True):
                if index is not None:
                    mine.append(index)
            if got == [None, None]:
                break
        assert sorted(taken[0] + taken[1]) == list(range(episodes))
        assert not set(taken[0]) & set(taken[1])
    finally:
        os.close(read_fd)
        os.close(write_fd)
