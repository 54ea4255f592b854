"""Gymnasium's environments for evolution strategies: rollout workers and evaluation.

The only part of es_toolkit that imports gymnasium (lazily, when an env is made):

* ``env``: ``make_env`` by id, with errors that name the missing extra or the unsupported
  space;
* ``episodes``: ``run_batch`` and ``LockStep``, episodes of NumPy policies
  (``Policy.numpy_apply``), several envs side by side under one forward pass;
* ``worker`` and ``pool``: ``RolloutPool``, worker processes running whole episodes,
  robust to envs that raise and workers that die; ``claims``, the queue of a call's
  episodes the workers share, and ``shared``, the parameters they read in place;
* ``evaluation``: ``evaluate_population`` (``seed_table``, then ``run_population``) and
  ``evaluate``, the contract of ``es_toolkit.rollout`` for Gymnasium envs: seeds derive
  from the key, so results do not depend on the number of workers.
"""

from es_toolkit.gym.env import extra_for, make_env
from es_toolkit.gym.episodes import EpisodeResults, run_batch
from es_toolkit.gym.evaluation import (
    episode_seeds,
    evaluate,
    evaluate_population,
    merge_episode_stats,
    run_population,
    seed_table,
)
from es_toolkit.gym.pool import RolloutError, RolloutPool, available_cores
from es_toolkit.gym.worker import WorkerSpec

__all__ = [
    "EpisodeResults",
    "RolloutError",
    "RolloutPool",
    "WorkerSpec",
    "available_cores",
    "episode_seeds",
    "evaluate",
    "evaluate_population",
    "extra_for",
    "make_env",
    "merge_episode_stats",
    "run_batch",
    "run_population",
    "seed_table",
]
