"""Gymnasium's environments for evolution strategies: rollout workers and evaluation.

The only part of es_toolkit that imports gymnasium (lazily, when an env is made). What
users call:

* ``make_env`` (``env``): a Gymnasium env by id, with errors that name the missing extra or
  the unsupported space;
* ``RolloutPool`` (``pool``) and its ``WorkerSpec``: worker processes running whole
  episodes of NumPy policies (``Policy.numpy_apply``), several envs side by side in each
  (``episodes``); an env that raises or a worker that dies is a ``RolloutError`` naming
  the member and seed;
* ``evaluate_population`` and ``evaluate`` (``evaluation``): the contract of
  ``es_toolkit.rollout`` for Gymnasium envs: seeds derive from the key, so results do not
  depend on the number of workers;
* ``record.record_episode``: an episode as a GIF or a video.

Importable here for the training loop, but plumbing: ``seed_table`` (the env seeds of a
key, traceable), ``run_population`` (``evaluate_population`` with the seeds given) and
``merge_episode_stats``. The workers' protocol
and shared memory live in the private modules (``_worker``, ``_protocol``, ``_claims``,
``_doorbell``, ``_shared``, ``_running``).
"""

from es_toolkit.gym._protocol import WorkerSpec
from es_toolkit.gym._seeds import seed_table as seed_table
from es_toolkit.gym.env import make_env
from es_toolkit.gym.episodes import EpisodeResults
from es_toolkit.gym.evaluation import evaluate, evaluate_population
from es_toolkit.gym.evaluation import merge_episode_stats as merge_episode_stats
from es_toolkit.gym.evaluation import run_population as run_population
from es_toolkit.gym.pool import RolloutError, RolloutPool, available_cores

__all__ = [
    "EpisodeResults",
    "RolloutError",
    "RolloutPool",
    "WorkerSpec",
    "available_cores",
    "evaluate",
    "evaluate_population",
    "make_env",
]
