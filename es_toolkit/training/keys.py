"""Every random draw of a training run derives from its seed, in one schedule.

The policy is initialized from fold 0, generation ``g`` draws from fold 1 then ``g``, the
evaluation after generation ``g`` from fold 2 then ``g``, and evaluations of a saved policy
(the final one, ``es-toolkit evaluate``) from their own seed's fold 3. A run resumed from
its checkpoint therefore continues with exactly the numbers of a run never stopped.
"""

import jax

EVALUATION_SEED = 12345  # the final evaluation's and ``evaluate``'s default seed


def init_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 0)


def generation_key(seed: int, generation: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), generation)


def evaluation_key(seed: int, generation: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 2), generation)


def policy_evaluation_key(seed: int = EVALUATION_SEED) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 3)
