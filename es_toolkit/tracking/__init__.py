"""Experiment tracking: a run's log rows, config, learning curve and evaluation video in
TensorBoard or Weights & Biases, next to the run folder's own ``metrics.jsonl``.

* ``base``: the ``Logger`` protocol, and ``LoggerBase`` (a context manager, and a callback
  for ``minimize``);
* ``rows``: what loggers take from a log row, and a ``minimize`` callback's rows;
* ``tensorboard``: ``TensorBoardLogger`` (event files through tensorboardX, no
  TensorFlow or PyTorch);
* ``wandb_logger``: ``WandbLogger`` (honours ``WANDB_MODE`` and the other ``WANDB_*``
  settings);
* ``media``: image sizes and a video's first and last frames;
* ``run_loggers``: the loggers of a run folder by name (``--logger``), fanned out as one.

The tracking extras load only when a logger is made.
"""

from es_toolkit.tracking.base import Logger, LoggerBase
from es_toolkit.tracking.rows import callback_rows
from es_toolkit.tracking.run_loggers import (
    LOGGERS,
    TENSORBOARD_DIR,
    WANDB_RUN_ID,
    RunLoggers,
    make_loggers,
)
from es_toolkit.tracking.tensorboard import TensorBoardLogger
from es_toolkit.tracking.wandb_logger import WandbLogger

__all__ = [
    "LOGGERS",
    "TENSORBOARD_DIR",
    "WANDB_RUN_ID",
    "Logger",
    "LoggerBase",
    "RunLoggers",
    "TensorBoardLogger",
    "WandbLogger",
    "callback_rows",
    "make_loggers",
]
