"""``TensorBoardLogger``: a run's records as TensorBoard event files, written by
tensorboardX (no TensorFlow or PyTorch).

Every number of a log row is a scalar in float64 (TensorBoard's scalar plugin reads it as
written) under two kinds of tags, one per x-axis:

* ``generation/<name>`` at the row's generation, in the event files of ``logdir``;
* ``env_steps/<name>`` (and ``num_evaluations/<name>`` for a Python objective's
  optimization) at that count, in the sub-run ``logdir/env_steps`` (one sub-run per axis,
  so that a resumed run hides exactly the events past its checkpoint on each axis).

The config goes in as text (its JSON) and as hyperparameters (the hparams plugin); images
as they are encoded in their file. TensorBoard plays videos only through moviepy, which
this package does not need, so a recorded episode goes in as its first and last frames
(``<name>/first_frame``, ``<name>/last_frame``) and a text naming the video's file.

Each session starts its event files with a restart marker (``purge_step``): a fresh run
(``resume_after=None``) hides whatever an earlier run left in ``logdir``; a resumed one
hides only the events past the last log row it kept, which it logs again.
"""

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from es_toolkit.tracking import media
from es_toolkit.tracking.base import LoggerBase
from es_toolkit.tracking.extras import import_extra
from es_toolkit.tracking.rows import generation_of, numbers_of

GENERATION = "generation"
# Row counts that are x-axes of their own, besides the generation.
STEP_KEYS = ("env_steps", "num_evaluations")
CONFIG_TAG = "config"


class TensorBoardLogger(LoggerBase):
    """Writes a run's records as TensorBoard event files in ``logdir``.

    Args:
        logdir: the folder of the event files (made if missing).
        resume_after: when continuing a run, the last log row it kept: events an earlier
            session wrote past its steps are hidden, as the run logs them again. ``None``:
            a new run; TensorBoard hides what an earlier one left in ``logdir``.
        step_keys: row counts that get a copy of every number indexed by them.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as logdir, TensorBoardLogger(logdir) as logger:
        ...     logger.log_metrics([{"generation": 0, "env_steps": 64, "return_mean": 9.5}])
    """

    def __init__(
        self,
        logdir: str | Path,
        *,
        resume_after: Mapping[str, Any] | None = None,
        step_keys: Sequence[str] = STEP_KEYS,
    ):
        self._tensorboardx = import_extra("tensorboardX", "tensorboard")
        self.logdir = Path(logdir)
        self.step_keys = tuple(step_keys)
        after = {} if resume_after is None else numbers_of(resume_after)
        # The first step each axis logs in this session: events at or past it are hidden.
        self._first = {
            axis: int(after[axis]) + 1 for axis in (GENERATION, *self.step_keys) if axis in after
        }
        self._generation = self._first.get(GENERATION, 0)  # where images and texts go
        self._writers: dict[str, Any] = {}
        self._closed = False
        self._writer(GENERATION)

    def log_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            generation = generation_of(row)
            values = numbers_of(row)
            for axis in (GENERATION, *self.step_keys):
                if axis not in values:
                    continue
                writer = self._writer(axis)
                step = int(values[axis])
                for name, value in values.items():
                    if name != axis:
                        writer.file_writer.add_summary(_scalar(f"{axis}/{name}", value), step)
            self._generation = generation
        self._flush()

    def log_config(self, config: Mapping[str, Any]) -> None:
        writer = self._writer(GENERATION)
        text = "```json\n" + json.dumps(dict(config), indent=2, default=str) + "\n```"
        writer.add_text(CONFIG_TAG, text, self._generation)
        from tensorboardX.summary import hparams

        _, session_start, _ = hparams(hparam_values(config), {})
        writer.file_writer.add_summary(session_start, self._generation)
        self._flush()

    def log_image(self, name: str, path: str | Path) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        height, width, channels = media.image_shape(path)
        image = Summary.Image(
            height=height,
            width=width,
            colorspace=channels,
            encoded_image_string=Path(path).read_bytes(),
        )
        summary = Summary(value=[Summary.Value(tag=name, image=image)])
        self._writer(GENERATION).file_writer.add_summary(summary, self._generation)
        self._flush()

    def log_video(self, name: str, path: str | Path) -> None:
        first, last, count = media.end_frames(path)
        writer = self._writer(GENERATION)
        writer.add_image(f"{name}/first_frame", first, self._generation, dataformats="HWC")
        writer.add_image(f"{name}/last_frame", last, self._generation, dataformats="HWC")
        note = (
            f"Recorded episode: {Path(path).resolve()} ({count} frames). TensorBoard shows "
            f"its first and last frames ({name}/first_frame, {name}/last_frame)."
        )
        writer.add_text(name, note, self._generation)
        self._flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for writer in self._writers.values():
            writer.close()

    def _writer(self, axis: str) -> Any:
        """The writer of ``axis``'s events, made at its first use (the generation's in
        ``logdir``, another axis's in ``logdir/<axis>``)."""
        if self._closed:
            raise RuntimeError(f"the TensorBoard logger of {self.logdir} is closed.")
        if axis not in self._writers:
            logdir = self.logdir if axis == GENERATION else self.logdir / axis
            self._writers[axis] = self._tensorboardx.SummaryWriter(
                str(logdir),
                purge_step=self._first.get(axis, 0),
                # Event files are named by the second: a session starting in the second
                # another one started would overwrite its file. TensorBoard reads them in
                # name order, so the suffix keeps sessions in order too.
                filename_suffix=f".{time.time_ns()}",
            )
        return self._writers[axis]

    def _flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()


def hparam_values(config: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The config as hyperparameters: nested dicts flattened (``strategy_options.b``),
    numbers, strings and booleans as they are, anything else (lists, ``None``) as JSON.

    Example:
        >>> hparam_values(
        ...     {"sigma": 0.1, "hidden_sizes": [32, 32], "seed": None, "strategy_options": {"b": 8}}
        ... )
        {'sigma': 0.1, 'hidden_sizes': '[32, 32]', 'seed': 'null', 'strategy_options.b': 8}
    """
    flat: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, Mapping) and value:
            inner = hparam_values(value)
            flat.update({f"{name}.{key}": item for key, item in inner.items()})
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def _scalar(tag: str, value: float) -> Any:
    """A scalar summary holding ``value`` in float64 (``add_scalar`` would round it to
    float32)."""
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboardX.proto.tensor_pb2 import TensorProto
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    tensor = TensorProto(dtype="DT_DOUBLE", double_val=[value], tensor_shape=TensorShapeProto())
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])
