"""Run records people read: a JSONL metrics log and PNG learning curves.

The log is appended one line per generation and flushed after every block, so a crash
loses nothing already reported; a PNG is rewritten atomically from it.
"""

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class JsonlLog:
    """Appends one JSON object per line; non-finite floats are written as null."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        with self.path.open("a") as stream:
            for row in rows:
                stream.write(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSONL log (a torn last line, from a crash mid-write, is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def metrics_rows(metrics: Mapping[str, np.ndarray], first_generation: int) -> list[dict[str, Any]]:
    """Per-generation rows from a dict of per-generation arrays."""
    length = len(next(iter(metrics.values())))
    return [
        {"generation": first_generation + i, **{k: v[i] for k, v in metrics.items()}}
        for i in range(length)
    ]


def plot_curves(
    path: str | os.PathLike,
    x: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
    points: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Path:
    """Writes a PNG with one line per curve (and ``points``: name -> (xs, ys) markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, values in curves.items():
        axes.plot(x, np.asarray(values, dtype=float), label=label, linewidth=1.5)
    for label, (xs, ys) in (points or {}).items():
        axes.plot(xs, np.asarray(ys, dtype=float), "o-", label=label, markersize=4)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if log_y:
        axes.set_yscale("symlog", linthresh=1e-6)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial)
    plt.close(figure)
    partial.replace(path)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        value = value.item() if np.ndim(value) == 0 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
