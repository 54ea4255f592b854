"""Policies for evolution strategies, and observation normalization.

* ``networks``: ``Policy(init, apply)``, ``linear_policy``, ``mlp_policy``, ``make_policy``.
* ``spaces``: duck-typed observation/action spaces and the action heads (argmax for a
  discrete space, tanh squashing into the bounds for a box).
* ``normalization``: ``ObsStats`` and their exact, order-independent merging, ``normalize``.

Typical use in a rollout: ``action = policy.apply(params, normalize(stats, obs))``, with
the visited observations summarized by ``update_obs_stats`` and merged over the population
after each generation.
"""

from es_toolkit.policies.networks import (
    ACTIVATIONS,
    POLICIES,
    Policy,
    get_activation,
    linear_policy,
    make_policy,
    mlp_policy,
)
from es_toolkit.policies.normalization import (
    ObsStats,
    batch_obs_stats,
    init_obs_stats,
    merge_obs_stats,
    merge_stacked_obs_stats,
    normalize,
    update_obs_stats,
)

__all__ = [
    "ACTIVATIONS",
    "POLICIES",
    "ObsStats",
    "Policy",
    "batch_obs_stats",
    "get_activation",
    "init_obs_stats",
    "linear_policy",
    "make_policy",
    "merge_obs_stats",
    "merge_stacked_obs_stats",
    "mlp_policy",
    "normalize",
    "update_obs_stats",
]
