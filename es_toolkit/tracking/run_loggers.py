"""The loggers of a run folder, by name (``--logger tensorboard --logger wandb``): made
together, fed together, closed together.

TensorBoard writes to ``<run folder>/tensorboard/``. W&B logs to the project
``WANDB_PROJECT`` (else ``es_toolkit``) under the run folder's name, with its files in
the run folder; the W&B run's id is kept in the run's checkpoint (``wandb_run_id``), so a
resumed run continues the same W&B run.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from es_toolkit._run_config import ConfigError
from es_toolkit.run_folder import RunFolder
from es_toolkit.tracking.base import Logger, LoggerBase

LOGGERS = ("tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"
WANDB_RUN_ID = "wandb_run_id"  # the checkpoint metadata's key for the W&B run's id


def check_logger_names(names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of logger names, each once, in their first order.

    Raises:
        ConfigError: ``names`` is not a list of names from ``LOGGERS``.
    """
    expected = f"loggers must be a list of names from {', '.join(LOGGERS)}"
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError("loggers", f"{expected}, got {names!r}.")
    unknown = [name for name in names if name not in LOGGERS]
    if unknown:
        raise ConfigError("loggers", f"{expected}, got {unknown[0]!r}.")
    return tuple(dict.fromkeys(names))


class RunLoggers(LoggerBase):
    """Several loggers as one: each record goes to every one of them.

    Args:
        loggers: the loggers, in order.
        owned: those of ``loggers`` that ``close`` closes (the others are their
            maker's to close).
        metadata: what the run's checkpoint keeps for a resumed run to continue them.
    """

    def __init__(
        self,
        loggers: Sequence[Logger] = (),
        *,
        owned: Sequence[Logger] = (),
        metadata: Mapping[str, Any] | None = None,
    ):
        self.loggers = list(loggers)
        self.owned = list(owned)
        self.metadata = dict(metadata or {})

    def log_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for logger in self.loggers:
            logger.log_metrics(rows)

    def log_config(self, config: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_config(config)

    def log_image(self, name: str, path: str | Path) -> None:
        for logger in self.loggers:
            logger.log_image(name, path)

    def log_video(self, name: str, path: str | Path) -> None:
        for logger in self.loggers:
            logger.log_video(name, path)

    def close(self) -> None:
        """Closes the owned loggers (every one, even if one fails; then raises its
        error)."""
        owned, self.owned = self.owned, []
        errors = []
        for logger in owned:
            try:
                logger.close()
            except Exception as error:  # the others are still closed
                errors.append(error)
        if errors:
            raise errors[0]


def make_loggers(
    names: Sequence[str],
    run_dir: str | Path,
    config: Mapping[str, Any],
    *,
    resume_after: Mapping[str, Any] | None = None,
    saved: Mapping[str, Any] | None = None,
    extra: Sequence[Logger] = (),
) -> RunLoggers:
    """The named loggers of the run folder ``run_dir``, with ``config`` logged.

    Args:
        names: logger names from ``LOGGERS``.
        run_dir: the run folder.
        config: the run's config (JSON-like), logged as hyperparameters.
        resume_after: when resuming, the last log row the run kept (TensorBoard hides the
            events past it, which the run logs again).
        saved: the checkpoint metadata of the run being resumed (its W&B run's id).
        extra: loggers the caller made, fed too but not closed.

    Raises:
        ImportError: a logger's extra is not installed (naming its install command).
    """
    names = check_logger_names(names)
    run_dir = Path(run_dir)
    saved = saved or {}
    made: list[Logger] = []
    metadata = {WANDB_RUN_ID: saved[WANDB_RUN_ID]} if WANDB_RUN_ID in saved else {}
    try:
        for name in names:
            if name == "tensorboard":
                from es_toolkit.tracking.tensorboard import TensorBoardLogger

                made.append(TensorBoardLogger(run_dir / TENSORBOARD_DIR, resume_after=resume_after))
            else:
                from es_toolkit.tracking.wandb_logger import WandbLogger

                logger = WandbLogger(
                    name=run_dir.resolve().name,
                    dir=run_dir,
                    config=config,
                    run_id=saved.get(WANDB_RUN_ID),
                )
                made.append(logger)
                metadata[WANDB_RUN_ID] = logger.run_id
        loggers = RunLoggers([*made, *extra], owned=made, metadata=metadata)
        loggers.log_config(config)
    except BaseException:
        RunLoggers(owned=made).close()
        raise
    return loggers


def split_loggers(loggers: Sequence[Any]) -> tuple[tuple[str, ...], list[Logger]]:
    """A run's ``loggers`` argument as logger names and logger objects, apart.

    Raises:
        TypeError: ``loggers`` is not a list of names and loggers.
    """
    if isinstance(loggers, str) or not isinstance(loggers, Sequence):
        raise TypeError(f"loggers must be a list of names or loggers, got {loggers!r}.")
    names = tuple(item for item in loggers if isinstance(item, str))
    objects = [item for item in loggers if not isinstance(item, str)]
    for item in objects:
        if not isinstance(item, Logger):
            raise TypeError(
                "loggers must hold names or loggers (with log_metrics, log_config, "
                f"log_image, log_video and close), got {item!r}."
            )
    return names, objects


def run_loggers(
    names: Sequence[str],
    folder: RunFolder,
    config: Mapping[str, Any],
    saved: Mapping[str, Any],
    extra: Sequence[Logger] = (),
) -> RunLoggers:
    """The loggers of the run in ``folder`` (none but ``extra`` in a process that does
    not write it); a resumed run's (``saved``: its checkpoint metadata) continue after the
    last log row it kept."""
    if not folder.writer:
        return RunLoggers()
    kept = folder.read_log() if saved else []
    return make_loggers(
        names,
        folder.path,
        config,
        resume_after=kept[-1] if kept else None,
        saved=saved,
        extra=extra,
    )
