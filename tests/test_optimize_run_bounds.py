"""Bounds in OptimizeConfig: checked at construction, normalized for the run folder's JSON,
a start drawn inside the box, and a best point inside it."""

import math
import re

import jax
import numpy as np
import pytest

from es_toolkit import objectives
from es_toolkit._run_config import ConfigError
from es_toolkit.optimize_config import OptimizeConfig
from es_toolkit.optimize_run import run_optimization
from es_toolkit.optimize_start import initial_point


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ([-1, 2.5], (-1.0, 2.5)),  # a JSON list, ints
        ((-math.inf, 3.0), (None, 3.0)),  # JSON has no infinity
        ((0.0, None), (0.0, None)),
        ((None, math.inf), None),  # no bound at all
    ],
)
def test_bounds_are_normalized(bounds, expected):
    assert OptimizeConfig(bounds=bounds).bounds == expected


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"bounds": (3.0, 1.0)}, "bounds", "bounds must have low < high, got low 3.0 >= high 1.0."),
        ({"bounds": (1.0, 1.0)}, "bounds", "low 1.0 >= high 1.0"),
        ({"bounds": (math.inf, None)}, "bounds", "low inf >= high inf"),
        ({"bounds": 1.0}, "bounds", "bounds must be (low, high): two floats"),
        ({"bounds": (0.0, 1.0, 2.0)}, "bounds", "got (0.0, 1.0, 2.0)"),
        ({"bounds": (math.nan, 1.0)}, "bounds", "got (nan, 1.0)"),
        ({"bounds": ("0", 1.0)}, "bounds", "got ('0', 1.0)"),
        ({"bounds": (False, 1.0)}, "bounds", "got (False, 1.0)"),
        ({"bound_handling": "clip"}, "bound_handling", "bound_handling must be one of"),
    ],
)
def test_bad_bounds_name_their_field(options, field, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        OptimizeConfig(**options)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("bounds", "start", "stop"),
    [
        (None, -5.12, 5.12),
        ((-10.0, 10.0), -5.12, 5.12),  # the box holds the domain: the same start
        ((1.0, None), 1.0, 5.12),
        ((None, -5.0), -5.12, -5.0),
        ((7.0, 8.0), 7.0, 7.0),  # the box misses the domain: its nearest bound
    ],
)
def test_initial_point_in_the_box(bounds, start, stop):
    """Rastrigin's start is uniform on [-5.12, 5.12]^d; with bounds, on its part in the box,
    by the same random numbers mapped affinely."""
    config = OptimizeConfig(objective="rastrigin", dim=1000, bounds=bounds)
    key = jax.random.key(3)
    x0 = np.asarray(initial_point(config, key))
    plain = np.asarray(objectives.get("rastrigin").init(key, 1000))
    assert x0.dtype == plain.dtype
    assert np.all((start <= x0) & (x0 <= stop))
    expected = start + (stop - start) * (plain + 5.12) / 10.24
    np.testing.assert_allclose(x0, expected, rtol=1e-5, atol=1e-5)
    if bounds is None or bounds == (-10.0, 10.0):
        np.testing.assert_array_equal(x0, plain)


@pytest.mark.parametrize("handling", ["transform", "penalty"])
def test_best_point_lies_in_the_box(tmp_path, handling):
    """Rastrigin in [2, 3]^4 (its minimum there is at the lower bound 2 in every
    coordinate, 4 f(2) = 16): the best point found is inside the box, and its value is
    f there."""
    config = OptimizeConfig(
        objective="rastrigin",
        dim=4,
        strategy="snes",
        population_size=16,
        num_generations=100,
        bounds=(2.0, 3.0),
        bound_handling=handling,
    )
    result = run_optimization(config, tmp_path, progress=False)
    best = np.asarray(result.best_params)
    assert np.all((best >= 2.0) & (best <= 3.0))
    fn = objectives.get("rastrigin").fn
    assert result.best_value == pytest.approx(float(fn(result.best_params)), rel=1e-5)
    assert result.best_value >= 16.0 - 1e-4
