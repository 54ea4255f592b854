"""Former home of the section writer, kept importable for scripts not yet moved to
``_bench``, which now holds what the benchmark scripts share."""

from _bench import write_section

__all__ = ["write_section"]
