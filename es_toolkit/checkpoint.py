"""Checkpoints without pickle: a pytree's leaves in one ``.npz`` file, plus JSON metadata.

A checkpoint is restored *into a template* (the freshly initialized state of the same run),
so nothing is ever unpickled or executed from the file, and a checkpoint from another
environment or policy shape fails with the first leaf whose path, shape or dtype differs.
Files are written atomically (temporary file, fsync, rename): a crash mid-write leaves the
previous checkpoint intact. A SHA-256 of the leaves detects corrupted files.
"""

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from es_toolkit.types import PyTree

FORMAT = "es_toolkit.checkpoint/1"
_META = "__metadata__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: corrupted, truncated, or from another run."""


def save_checkpoint(path: str | os.PathLike, tree: PyTree, metadata: dict[str, Any]) -> Path:
    """Writes ``tree`` and JSON-serializable ``metadata`` to ``path`` atomically."""
    path = Path(path)
    leaves = _leaves_with_paths(tree)
    arrays = {f"leaf_{i}": np.asarray(leaf) for i, (_, leaf) in enumerate(leaves)}
    header = {
        "format": FORMAT,
        "paths": [name for name, _ in leaves],
        "shapes": [list(a.shape) for a in arrays.values()],
        "dtypes": [str(a.dtype) for a in arrays.values()],
        "sha256": _digest(arrays.values()),
        "metadata": metadata,
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_META: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as stream:
        stream.write(buffer.getvalue())
        stream.flush()
        os.fsync(stream.fileno())
    partial.replace(path)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata saved with a checkpoint (checks the file is readable)."""
    return _read(Path(path))[0]["metadata"]


def load_checkpoint(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Restores a checkpoint into the structure of ``like``; returns ``(tree, metadata)``.

    Raises:
        CheckpointError: the file is missing, truncated or corrupted, or its leaves differ
            from ``like``'s in path, shape or dtype (a checkpoint of another run).
    """
    path = Path(path)
    header, arrays = _read(path)
    expected = _leaves_with_paths(like)
    names = [name for name, _ in expected]
    if header["paths"] != names:
        missing = sorted(set(names) - set(header["paths"]))
        extra = sorted(set(header["paths"]) - set(names))
        raise CheckpointError(
            f"checkpoint {path} holds another structure: missing {missing[:5]}, "
            f"unexpected {extra[:5]} (a checkpoint of another environment, policy or "
            "strategy?)."
        )
    leaves = []
    for i, (name, template) in enumerate(expected):
        array = arrays[i]
        template = np.asarray(template)
        if array.shape != template.shape or array.dtype != template.dtype:
            raise CheckpointError(
                f"checkpoint {path}: {name} has shape {array.shape} and dtype {array.dtype}, "
                f"this run expects {template.shape} and {template.dtype} (a checkpoint of "
                "another environment or policy size?)."
            )
        leaves.append(jax.numpy.asarray(array))
    return jax.tree.unflatten(jax.tree.structure(like), leaves), header["metadata"]


def _read(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:
            header = json.loads(bytes(data[_META]).decode())
            arrays = [data[f"leaf_{i}"] for i in range(len(header["paths"]))]
    except (zipfile.BadZipFile, OSError, KeyError, ValueError, EOFError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted and cannot be read ({error})."
        ) from error
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {header.get('format')!r}, not {FORMAT}."
        )
    if _digest(arrays) != header["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupted: its checksum does not match.")
    return header, arrays


def _leaves_with_paths(tree: PyTree) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def _digest(arrays: Any) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
