"""A one-line progress report for long loops, on standard error."""

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``label  done/total  rate/s  key=value ...``, rewritten in place on a terminal
    and as one line per update elsewhere (logs, CI)."""

    def __init__(
        self, total: int, label: str, *, stream: TextIO | None = None, enabled: bool = True
    ):
        self.total = total
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.start = time.perf_counter()
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, **fields: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        shown = "  ".join(f"{name}={_format(value)}" for name, value in fields.items())
        line = f"{self.label}  {done}/{self.total}  {rate:.1f}/s  {elapsed:.1f}s  {shown}"
        end = "" if self.interactive else "\n"
        prefix = "\r\033[K" if self.interactive else ""
        self.stream.write(prefix + line + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"
