"""Evolution strategies as ``EvolutionStrategy(init, ask, tell)`` NamedTuples.

Every factory takes ``population_size`` first and has defaults for everything else, so
``get_strategy(name)(population_size)`` builds a working strategy from a name (``STRATEGIES``
lists them).
"""

from collections.abc import Callable

from es_toolkit.strategies.ars import ARSState, ars
from es_toolkit.strategies.base import EvolutionStrategy
from es_toolkit.strategies.clipup import ClipUpState, clipup
from es_toolkit.strategies.cma_es import CMAESState, cma_es, cma_es_default_population_size
from es_toolkit.strategies.lm_ma_es import LMMAESState, lm_ma_es
from es_toolkit.strategies.open_es import OpenESState, open_es
from es_toolkit.strategies.pgpe import PGPEState, pgpe
from es_toolkit.strategies.sep_cma_es import SepCMAESState, sep_cma_es
from es_toolkit.strategies.snes import SNESState, snes

STRATEGIES: dict[str, Callable[..., EvolutionStrategy]] = {
    "open_es": open_es,
    "pgpe": pgpe,
    "snes": snes,
    "ars": ars,
    "cma_es": cma_es,
    "sep_cma_es": sep_cma_es,
    "lm_ma_es": lm_ma_es,
}


def get_strategy(name: str) -> Callable[..., EvolutionStrategy]:
    """The factory registered under ``name`` in ``STRATEGIES``; a clear error otherwise."""
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}."
        ) from None


__all__ = [
    "STRATEGIES",
    "ARSState",
    "CMAESState",
    "ClipUpState",
    "EvolutionStrategy",
    "LMMAESState",
    "OpenESState",
    "PGPEState",
    "SNESState",
    "SepCMAESState",
    "ars",
    "clipup",
    "cma_es",
    "cma_es_default_population_size",
    "get_strategy",
    "lm_ma_es",
    "open_es",
    "pgpe",
    "sep_cma_es",
    "snes",
]
