"""What the benchmark scripts' pictures share: matplotlib without a display, one palette
(ours in blues, each other library in its own color), bars grouped side by side with
their values written on them, and saving a figure as a PNG of ``docs/images``."""

import math
from pathlib import Path

IMAGES = "images"  # folder of the pictures, next to the Markdown file that shows them
OURS = "tab:blue"
OURS_VARIANT = "#8fbbe0"  # a second configuration of ours, lighter
PYCMA = "tab:orange"
EVOSAX = "tab:green"
DASK = "tab:purple"
REFERENCE = "tab:gray"
DPI = 100


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_path(markdown: Path, name: str) -> Path:
    """Where the picture ``name`` linked from ``markdown`` as ``images/NAME`` lives."""
    return Path(markdown).resolve().parent / IMAGES / name


def value_text(value: float) -> str:
    """A bar's label, short enough for a narrow bar: three significant digits (``0.17``,
    ``312``), thousands separated below ten thousand (``1,641``), in thousands, millions
    or billions above (``15.9k``, ``2.5M``)."""
    if value < 999.5:  # 999.7 would read "1e+03" here
        return f"{value:.3g}"
    if value < 9999.5:
        return f"{value:,.0f}"
    for scale, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "G")):
        text = f"{value / scale:.3g}"
        if float(text) < 1000:
            return text + suffix
    return f"{value:.3g}"


def plain_log_scale(axes) -> None:
    """A log-scale y axis with ticks at 1, 2 and 5 times the powers of ten, written as
    plain numbers (``0.2``, ``50``, ``1,000``) instead of powers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: tick_text(value)))
    axes.yaxis.set_minor_formatter(NullFormatter())


def tick_text(value: float) -> str:
    """``0.2``, ``50``, ``1,000``: a tick of a log axis as a plain number."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


def grouped_bars(axes, groups: list[str], series: list[tuple[str, str, list]]) -> None:
    """Bars side by side in each of ``groups``, one per ``(label, color, values)`` of
    ``series`` (a value of ``None`` leaves its bar out), each labelled with its value.

    Args:
        axes: the matplotlib axes to draw on.
        groups: the tick label of each group, in order.
        series: one entry per bar of a group, its values in the order of ``groups``.
    """
    if not groups or not series:
        raise ValueError("grouped_bars needs at least one group and one series")
    width = 0.8 / len(series)
    for index, (label, color, values) in enumerate(series):
        if len(values) != len(groups):
            raise ValueError(f"series {label!r} has {len(values)} values for {len(groups)} groups")
        offset = (index - (len(series) - 1) / 2) * width
        kept = [(k, v) for k, v in enumerate(values) if v is not None and math.isfinite(v)]
        bars = axes.bar(
            [k + offset for k, _ in kept], [v for _, v in kept], width, label=label, color=color
        )
        axes.bar_label(bars, labels=[value_text(v) for _, v in kept], fontsize=7, padding=1)
    axes.set_xticks(range(len(groups)), groups)
    axes.grid(True, axis="y", which="major", alpha=0.3)
    axes.set_axisbelow(True)


def save(figure, path: Path) -> None:
    """Writes ``figure`` to ``path`` (folders made as needed) and closes it."""
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    pyplot().close(figure)
