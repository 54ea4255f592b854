"""Training policies with evolution strategies, on JAX-native or Gymnasium environments.

* ``config``: ``TrainConfig`` (checked when made; ``TrainConfig.for_env`` for a task's
  tuned settings, from ``defaults``) and the rules for resuming a saved run;
* ``backends``: where episodes run, one module per kind of environment (``jax_envs``:
  jitted generations on JAX ports; ``gymnasium_envs``: Gymnasium's envs in worker
  processes);
* ``state`` and ``keys``: the run's state, its updates, and its key schedule;
* ``loop``: ``train`` into a run folder, with exact resume; ``load_run`` and
  ``evaluate_policy`` for saved runs.
"""

from es_toolkit.training.backends import BACKENDS, open_backend, resolve_backend
from es_toolkit.training.config import RESUMABLE_FIELDS, ConfigError, TrainConfig
from es_toolkit.training.defaults import TASK_DEFAULTS, task_defaults
from es_toolkit.training.loop import TrainResult, evaluate_policy, load_run, read_config, train
from es_toolkit.training.state import TrainState

__all__ = [
    "BACKENDS",
    "RESUMABLE_FIELDS",
    "TASK_DEFAULTS",
    "ConfigError",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "evaluate_policy",
    "load_run",
    "open_backend",
    "read_config",
    "resolve_backend",
    "task_defaults",
    "train",
]
