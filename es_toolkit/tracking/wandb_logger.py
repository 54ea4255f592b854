"""``WandbLogger``: a run's records in Weights & Biases.

Every log row is one history step holding the row's numbers under their own names
(``generation``, ``env_steps``, ``return_mean``, ...); ``env_steps`` (or, where a run has
none, ``generation``) is every chart's x-axis (``define_metric``), and the other counts
can be chosen as the x-axis in the UI. The config is the run's ``config``; images are
``wandb.Image``; a recorded episode is a ``wandb.Video`` (GIF, MP4, WebM or Ogg: another
format goes in as its first and last frames).

W&B's own settings apply: ``WANDB_MODE=offline`` writes the run under ``dir`` only (sync
it later with ``wandb sync``), ``WANDB_SILENT``, ``WANDB_ENTITY``, ``WANDB_PROJECT`` (the
project when none is given; else ``es_toolkit``).
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from es_toolkit.tracking import media
from es_toolkit.tracking.base import LoggerBase
from es_toolkit.tracking.extras import import_extra
from es_toolkit.tracking.rows import generation_of, numbers_of

DEFAULT_PROJECT = "es_toolkit"
# The x-axes, in order of preference for the charts: the first a row has is theirs.
STEP_KEYS = ("env_steps", "num_evaluations", "generation")


class WandbLogger(LoggerBase):
    """Logs a run's records to a W&B run (a new one, or the run ``run_id`` resumed).

    Args:
        project: the W&B project (default: ``WANDB_PROJECT``, else ``es_toolkit``).
        name: the run's display name.
        dir: where W&B writes its files (``dir/wandb/``); made if missing.
        config: the run's settings, as the W&B run's config.
        run_id: continue the W&B run of this id (``resume="allow"``: made if it does not
            exist); ``None``: a new run (its id is ``self.run_id``).
        **init_options: more arguments of ``wandb.init`` (``entity``, ``tags``, ...).
    """

    def __init__(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        dir: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        **init_options: Any,
    ):
        self._wandb = import_extra("wandb", "wandb")
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
        resume = {} if run_id is None else {"id": run_id, "resume": "allow"}
        self.run = self._wandb.init(
            project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            name=name,
            dir=None if dir is None else str(dir),
            config=None if config is None else dict(config),
            reinit="create_new",  # leaves any other run of this process alone
            **resume,
            **init_options,
        )
        self.run_id: str = self.run.id
        self._axes_defined = False
        self._closed = False

    def log_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            generation_of(row)
            values = numbers_of(row)
            if not self._axes_defined:
                self._define_axes(values)
            self.run.log(values)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config), allow_val_change=True)

    def log_image(self, name: str, path: str | Path) -> None:
        self.run.log({name: self._wandb.Image(str(path))})

    def log_video(self, name: str, path: str | Path) -> None:
        path = Path(path)
        if path.suffix.lower().lstrip(".") in self._wandb.Video.EXTS:
            self.run.log({name: self._wandb.Video(str(path))})
            return
        first, last, _ = media.end_frames(path)
        caption = f"{path.name}: {{}} frame (W&B plays {', '.join(self._wandb.Video.EXTS)})"
        self.run.log(
            {
                f"{name}/first_frame": self._wandb.Image(first, caption=caption.format("first")),
                f"{name}/last_frame": self._wandb.Image(last, caption=caption.format("last")),
            }
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.run.finish()

    def _define_axes(self, values: Mapping[str, Any]) -> None:
        """Charts against the first of ``STEP_KEYS`` the rows have (W&B needs it before
        the first row)."""
        axes = [key for key in STEP_KEYS if key in values]
        for axis in axes:
            self.run.define_metric(axis)
        self.run.define_metric("*", step_metric=axes[0])
        self._axes_defined = True
