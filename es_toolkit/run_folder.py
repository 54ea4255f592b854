"""A run's folder: ``metrics.jsonl``, ``checkpoint.npz``, ``curve.png``, ``result.json``.

One process owns a folder at a time: ``claim`` takes an OS file lock (``flock``), which the
OS releases when the process dies, so a killed run never leaves a stale lock. Claiming
refuses a folder that holds another run unless asked to overwrite or resume it, and a
refused or failed start leaves no folder behind that it created. Every write is atomic or
append-only, and an I/O failure becomes a ``RunFolderError`` naming the path.
"""

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from es_toolkit import checkpoint as checkpoint_lib
from es_toolkit import report

LOG_NAME = "metrics.jsonl"
CHECKPOINT_NAME = "checkpoint.npz"
CURVE_NAME = "curve.png"
RESULT_NAME = "result.json"
LOCK_NAME = ".lock"
RUN_FILES = (LOG_NAME, CHECKPOINT_NAME, CURVE_NAME, RESULT_NAME)


class RunFolderError(RuntimeError):
    """A run folder that cannot be used: in use, not a folder, or not writable."""


class RunClock:
    """Seconds a run has trained, counting those before it was resumed."""

    def __init__(self, before: float = 0.0):
        self.before = before
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def session(self) -> float:
        """Seconds since this process started (or resumed) the run."""
        return time.perf_counter() - self.start


class RunFolder:
    """The files of one run in ``path``. With ``writer=False`` (every process of a
    multi-process run but the first) nothing is written or locked."""

    def __init__(self, path: str | os.PathLike, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self._lock: int | None = None
        self._created = False

    @property
    def log(self) -> Path:
        return self.path / LOG_NAME

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def curve(self) -> Path:
        return self.path / CURVE_NAME

    @property
    def result(self) -> Path:
        return self.path / RESULT_NAME

    def holds_run(self) -> bool:
        return self.log.exists() or self.checkpoint.exists()

    @contextlib.contextmanager
    def claim(self, *, resume: bool = False, overwrite: bool = False) -> Iterator["RunFolder"]:
        """Owns the folder for the ``with`` block: creates and locks it, refuses another
        run's folder (unless ``overwrite``) or a folder with nothing to ``resume``."""
        if not self.writer:
            yield self
            return
        self._lock_folder()
        try:
            if resume and not self.checkpoint.exists():
                raise RunFolderError(f"{self.path} holds no run to resume (no {CHECKPOINT_NAME}).")
            if not resume and self.holds_run():
                if not overwrite:
                    raise FileExistsError(
                        f"{self.path} already holds a run; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --out."
                    )
                for name in RUN_FILES:
                    with self.writing(self.path / name):
                        (self.path / name).unlink(missing_ok=True)
            yield self
        finally:
            self._release()

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """Turns an I/O failure while writing ``path`` into a one-line ``RunFolderError``."""
        try:
            yield
        except OSError as error:
            reason = error.strerror or str(error)
            raise RunFolderError(f"cannot write {path}: {reason}.") from error

    def append_log(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.writer:
            with self.writing(self.log):
                report.JsonlLog(self.log).write(rows)

    def read_log(self) -> list[dict[str, Any]]:
        return report.read_jsonl(self.log) if self.log.exists() else []

    def truncate_log(self, generations: int) -> None:
        """Drops log rows past the checkpoint (written before a crash, to be redone)."""
        if not self.writer or not self.log.exists():
            return
        rows = [row for row in self.read_log() if row["generation"] < generations]
        partial = self.log.with_name(LOG_NAME + ".partial")
        with self.writing(self.log):
            partial.unlink(missing_ok=True)
            report.JsonlLog(partial).write(rows)
            partial.replace(self.log)

    def save_checkpoint(self, tree: Any, metadata: dict[str, Any]) -> None:
        if self.writer:
            with self.writing(self.checkpoint):
                checkpoint_lib.save_checkpoint(self.checkpoint, tree, metadata)

    def read_metadata(self) -> dict[str, Any]:
        """The saved run's metadata (``config``, ``generation``, ``wall_time_s``)."""
        if not self.checkpoint.exists():
            raise RunFolderError(f"{self.path} holds no saved run (no {CHECKPOINT_NAME}).")
        return checkpoint_lib.read_metadata(self.checkpoint)

    def load_checkpoint(self, like: Any) -> tuple[Any, dict[str, Any]]:
        return checkpoint_lib.load_checkpoint(self.checkpoint, like)

    def write_result(self, summary: Mapping[str, Any]) -> None:
        if self.writer:
            partial = self.result.with_name(RESULT_NAME + ".partial")
            with self.writing(self.result):
                partial.write_text(json.dumps(summary, indent=2) + "\n")
                partial.replace(self.result)

    def plot(self, *args: Any, **kwargs: Any) -> Path:
        """``report.plot_curves`` into ``curve.png``."""
        if self.writer:
            with self.writing(self.curve):
                report.plot_curves(self.curve, *args, **kwargs)
        return self.curve

    def _lock_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is not a folder.")
        self._created = not self.path.exists()
        with self.writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            os.close(descriptor)
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise RunFolderError(f"cannot lock {self.path}: {error.strerror}.") from error
            raise RunFolderError(
                f"{self.path} is in use by another run (process {owner or 'unknown'}); wait "
                "for it to end or choose another --out."
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        self._lock = descriptor

    def _release(self) -> None:
        """Unlocks; removes the folder if this claim created it and no run was written."""
        if self._lock is None:
            return
        if self._created and not self.holds_run() and not self.result.exists():
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.path.rmdir()
        os.close(self._lock)
        self._lock = None
