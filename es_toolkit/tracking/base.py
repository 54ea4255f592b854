"""What a logger is: it takes a run's log rows, its config, images and videos, and is
closed once; and what every logger of this package shares."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from es_toolkit.tracking.rows import callback_rows


@runtime_checkable
class Logger(Protocol):
    """Where a run's records go besides its JSONL log."""

    def log_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Logs rows of the run's log, one per generation (each has ``generation``)."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Logs the run's settings (a JSON-like dict) as hyperparameters."""

    def log_image(self, name: str, path: str | Path) -> None:
        """Logs an image file (a learning curve's PNG)."""

    def log_video(self, name: str, path: str | Path) -> None:
        """Logs a recorded episode (a GIF or a video file)."""

    def close(self) -> None:
        """Writes out what is pending and releases the logger; later calls do nothing."""


class LoggerBase:
    """A logger's ways of use: ``with`` closes it, and calling it with the dict that
    ``minimize`` gives its callback logs that block's generations.

    Example:
        >>> import numpy as np
        >>> class Printer(LoggerBase):
        ...     def log_metrics(self, rows):
        ...         print([(row["generation"], float(row["best_value"])) for row in rows])
        ...
        ...     def close(self):
        ...         print("closed")
        >>> with Printer() as printer:
        ...     printer({"generation": 2, "metrics": {"best_value": np.array([3.0, 1.5])}})
        [(0, 3.0), (1, 1.5)]
        closed
    """

    def log_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __call__(self, info: Mapping[str, Any]) -> None:
        """``minimize``'s callback: logs the block's rows, and never asks it to stop."""
        self.log_metrics(callback_rows(info))

    def __enter__(self):
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()
