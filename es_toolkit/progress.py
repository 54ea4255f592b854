"""A one-line progress report for long loops, on standard error."""

import math
import sys
import time
from typing import TextIO


class Progress:
    """Prints ``label  done/total  rate/s  eta=...  elapsed  key=value ...``, rewritten in
    place on a terminal and as one line per update elsewhere (logs, CI).

    The rate counts the steps done since this report started (``initial``: steps done
    before, as in a resumed run), and the time left (``eta``) is the steps left at that
    rate.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        initial: int = 0,
    ):
        self.total = total
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.initial = initial
        self.start = time.perf_counter()
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, **fields: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = (done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = format_duration((self.total - done) / rate if rate > 0 else math.inf)
        shown = "  ".join(f"{name}={_format(value)}" for name, value in fields.items())
        line = (
            f"{self.label}  {done}/{self.total}  {rate:.1f}/s  eta={eta}  {elapsed:.1f}s  {shown}"
        )
        end = "" if self.interactive else "\n"
        prefix = "\r\033[K" if self.interactive else ""
        self.stream.write(prefix + line + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def format_duration(seconds: float) -> str:
    """``seconds`` for a person: ``42s``, ``3m05s``, ``2h07m``; ``?`` when unknown (no
    rate yet).

    Example:
        >>> format_duration(42.4), format_duration(185), format_duration(7620)
        ('42s', '3m05s', '2h07m')
    """
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"
