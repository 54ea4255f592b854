"""Test set-up: 8 forced CPU devices, so sharding is testable on any machine, and a
faster-compiling XLA backend.

This runs before any test touches JAX's backend; the library itself never queries devices
at import time, so importing it first is safe. Compilation dominates this suite's time on a
2-core machine; LLVM optimization level 0 halves it without changing the computation's
semantics (XLA's own graph passes still run).
"""

import gc
import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Drops every compiled program after each test module. The suite compiles thousands
    of programs in one process; kept to the end, they made XLA's compiler crash (a
    segmentation fault while compiling) late in full runs on a 2-core machine."""
    yield
    jax.clear_caches()
    gc.collect()
