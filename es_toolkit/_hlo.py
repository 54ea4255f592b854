"""The collectives of a compiled XLA program, read from its HLO text: which cross-device
operations a sharded computation runs and how many bytes each produces per device (what
the benchmarks and tests check crosses devices)."""

import re
from typing import Any, NamedTuple

import numpy as np

# Cross-device operations of a compiled XLA program (``-start`` forms are the async ones).
COLLECTIVE_OPS = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2}
_INSTRUCTION = re.compile(
    r"=\s*(?P<result>.+?)\s+(?P<op>" + "|".join(COLLECTIVE_OPS) + r")(?:-start)?\("
)
_ARRAY = re.compile(r"(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]")


class Collective(NamedTuple):
    op: str  # e.g. "all-gather"
    shapes: tuple[tuple[int, ...], ...]  # of the result (several for a combined op)
    bytes: int  # size of the result per device


def collectives(compiled: Any) -> list[Collective]:
    """The cross-device operations of a compiled program (``jit(f).lower(...).compile()``
    or its ``as_text()``), with the size of what each one produces per device."""
    text = compiled if isinstance(compiled, str) else compiled.as_text()
    found = []
    for line in text.splitlines():
        match = _INSTRUCTION.search(line)
        if match is None:
            continue
        shapes, size = [], 0
        for array in _ARRAY.finditer(match["result"]):
            dims = tuple(int(d) for d in array["dims"].split(",") if d)
            shapes.append(dims)
            width = _DTYPE_BYTES.get(array["dtype"], 8 if array["dtype"].endswith("64") else 4)
            size += int(np.prod(dims, dtype=np.int64)) * width
        found.append(Collective(match["op"], tuple(shapes), size))
    return found
