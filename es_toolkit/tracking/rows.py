"""Log rows as loggers take them: a ``minimize`` callback's block as rows (those the run
folder's log gets), and a row's numbers."""

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from es_toolkit.report import metrics_rows


def callback_rows(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per generation of the block a ``minimize`` callback is given: the
    generation (counted from 0) and each metric's value in it.

    Args:
        info: the callback's dict: ``generation`` (generations done after the block) and
            ``metrics`` (an array per metric, one value per generation of the block).

    Returns:
        The rows, oldest first.
    """
    try:
        done, metrics = int(info["generation"]), info["metrics"]
    except (KeyError, TypeError) as error:
        raise ValueError(
            "info must be the dict minimize gives its callback, with 'generation' and "
            f"'metrics' (got {type(info).__name__} without {error})."
        ) from None
    if not metrics:
        return []
    length = len(next(iter(metrics.values())))
    return metrics_rows(metrics, done - length)


def numbers_of(row: Mapping[str, Any]) -> dict[str, float | int]:
    """The row's values as Python numbers (ints stay ints; ``None``, which the JSONL log
    writes for a non-finite float, is left out).

    Raises:
        TypeError: a value is not a real number (nor a 0-d array of one).
    """
    values = {}
    for name, value in row.items():
        if value is None:
            continue
        if isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0:
            value = value.item()
        if isinstance(value, bool | numbers.Integral):
            values[name] = int(value)
        elif isinstance(value, numbers.Real):
            values[name] = float(value)
        else:
            raise TypeError(f"log row values must be real numbers, got {name}={value!r}.")
    return values


def generation_of(row: Mapping[str, Any]) -> int:
    """The row's generation (every log row has one)."""
    if "generation" not in row:
        raise ValueError(f"log rows must have a 'generation', got keys {sorted(row)}.")
    return int(row["generation"])
