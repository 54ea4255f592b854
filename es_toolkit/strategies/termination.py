"""Why a run stops: the names of the reasons, shared by strategies and the optimize loop.

A strategy's ``stop(state)`` returns an int32 index into :data:`STOP_REASONS` (0: go on);
``minimize`` adds its own reasons (the generation limit, the evaluation budget, the target,
the callback) and reports the name as ``result.stop_reason``.
"""

import jax
import jax.numpy as jnp

STOP_REASONS: tuple[str, ...] = (
    "",  # not stopped
    "num_generations",
    "max_evaluations",
    "target",
    "callback",
    "maxiter",  # a restart schedule's cap on the generations of one run
    # pycma's termination criteria, with pycma's names
    "tolfun",
    "tolfunhist",
    "tolx",
    "tolstagnation",
    "tolconditioncov",
    "noeffectaxis",
    "noeffectcoord",
    "tolflatfitness",
    "tolupsigma",
)


def code(name: str) -> int:
    """The index of the reason ``name`` in :data:`STOP_REASONS`."""
    try:
        return STOP_REASONS.index(name)
    except ValueError:
        raise ValueError(
            f"unknown stop reason {name!r}; choose one of {', '.join(STOP_REASONS[1:])}."
        ) from None


def first_reason(checks: dict[str, jax.Array]) -> jax.Array:
    """The code of the first name in ``checks`` whose boolean is true, else 0 (int32)."""
    reason = jnp.zeros((), jnp.int32)
    for name, hit in reversed(checks.items()):
        reason = jnp.where(hit, jnp.int32(code(name)), reason)
    return reason
