"""Evolution strategies as ``EvolutionStrategy(init, ask, tell)`` NamedTuples."""

from es_toolkit.strategies.base import EvolutionStrategy
from es_toolkit.strategies.open_es import OpenESState, open_es

__all__ = ["EvolutionStrategy", "OpenESState", "open_es"]
