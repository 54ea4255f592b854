"""Test set-up: 4 forced CPU devices, so sharding is testable on any machine.

This runs before any test touches JAX's backend; the library itself never queries devices
at import time, so importing it first is safe.
"""

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_platforms", "cpu")
