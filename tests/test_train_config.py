"""TrainConfig: settings that cannot train are refused by name when the config is made,
and the tuned settings of a task are one call away."""

import dataclasses
import math

import pytest

from es_toolkit.training import TASK_DEFAULTS, ConfigError, TrainConfig
from es_toolkit.training.config import resume_config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("episodes_per_member", 0, "episodes_per_member must be an int >= 1, got 0"),
        ("learning_rate", math.nan, "learning_rate must be a positive finite float, got nan"),
        ("learning_rate", -1.0, "learning_rate must be a positive finite float, got -1.0"),
        ("sigma", 0.0, "sigma must be a positive finite float"),
        ("reward_shift", math.nan, "reward_shift must be a finite float, got nan"),
        ("target_return", math.inf, "target_return must be a finite float"),
        ("eval_episodes", 0, "eval_episodes must be an int >= 1, got 0"),
        ("final_eval_episodes", 0, "final_eval_episodes must be an int >= 1, got 0"),
        ("num_generations", 0, "num_generations must be an int >= 1, got 0"),
        ("eval_every", 0, "eval_every must be an int >= 1"),
        ("population_size", 7, "population_size must be even"),
        ("population_size", 2.5, "population_size must be an int >= 2"),
        ("num_workers", 0, "num_workers must be an int >= 1"),
        ("max_episode_steps", 0, "max_episode_steps must be an int >= 1"),
        ("devices", 0, "devices must be an int >= 1"),
        ("seed", -1, "seed must be an int >= 0"),
        ("hidden_sizes", (32, 0), "hidden_sizes must be ints >= 1"),
        (
            "strategy",
            "cma",
            "strategy must be one of ars, cma_es, lm_ma_es, open_es, pgpe, sep_cma_es, snes, "
            "got 'cma'",
        ),
        ("policy", "cnn", "policy must be one of linear, mlp"),
        ("backend", "brax", "backend must be one of auto, gymnasium, jax"),
        ("normalize_obs", "yes", "normalize_obs must be True or False"),
        ("strategy_options", {"top_directions": 3}, "top_directions"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
        TrainConfig(**{field: value})
    assert error.value.field in (field, "")


def test_for_env_is_the_tuned_config_with_overrides():
    config = TrainConfig.for_env("Pendulum-v1", num_generations=3)
    expected = {**TASK_DEFAULTS["Pendulum-v1"], "num_generations": 3}
    assert {name: getattr(config, name) for name in expected} == expected
    assert TrainConfig.for_env("NoSuchTask-v0") == TrainConfig(env="NoSuchTask-v0")


def test_tuned_strategy_options_apply_only_to_the_tuned_strategy():
    assert TrainConfig.for_env("Hopper-v5").strategy_options == {"top_directions": 4}
    assert TrainConfig.for_env("Hopper-v5", strategy="pgpe").strategy_options == {}
    cheetah = TrainConfig.for_env("HalfCheetah-v5", strategy_options={"top_directions": 8})
    assert cheetah.strategy_options == {"top_directions": 8}


def test_json_round_trip():
    config = TrainConfig.for_env("Pendulum-v1")
    assert TrainConfig.from_json(config.to_json()) == config


def test_resume_config_keeps_the_run_and_takes_resumable_changes():
    saved = TrainConfig(num_generations=10)
    given = dataclasses.replace(saved, num_generations=20, num_workers=3, devices=2)
    assert resume_config(saved, given, "R") == given
    with pytest.raises(ConfigError, match=r"cannot resume R: it is another run \(seed: saved 0"):
        resume_config(saved, dataclasses.replace(saved, seed=1), "R")
