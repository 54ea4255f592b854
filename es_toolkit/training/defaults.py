"""Tuned settings per task: they train each task to its threshold quickly on a CPU.

``TrainConfig.for_env(env_id, **overrides)`` starts from these; the command line uses it
too, so the API and ``es-toolkit train --env ENV`` train the same run.
"""

from typing import Any

# Brax's envs on the MJX pipeline, for a GPU; not tuned here. OpenAI-ES with the settings
# evosax's benchmark tuned for Brax ant (a 4-layer, 32-unit tanh MLP, population 256,
# sigma 0.05, learning rate 0.01; Lange 2022, arXiv:2212.04180), without its decays;
# halfcheetah takes the same. Episodes of 1000 steps, as Brax's trainers use.
_BRAX_OPEN_ES = {
    "strategy": "open_es",
    "policy": "mlp",
    "hidden_sizes": (32, 32, 32, 32),
    "population_size": 256,
    "num_generations": 1000,
    "sigma": 0.05,
    "learning_rate": 0.01,
    "max_episode_steps": 1000,
    "eval_every": 20,
    "eval_episodes": 8,
    "final_eval_episodes": 16,
}

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "strategy": "open_es",
        "policy": "linear",
        "population_size": 64,
        "num_generations": 100,
        "sigma": 0.1,
        "learning_rate": 0.05,
        "eval_episodes": 100,
        "target_return": 475.0,
    },
    "Acrobot-v1": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 32,
        "num_generations": 200,
        "eval_episodes": 100,
        "target_return": -90.0,
    },
    "MountainCar-v0": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 32,
        "num_generations": 200,
        "sigma": 1.0,
        "eval_episodes": 100,
        "target_return": -115.0,
    },
    "MountainCarContinuous-v0": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 16,
        "num_generations": 200,
        "sigma": 1.0,
        "eval_every": 5,
        "eval_episodes": 100,
        "target_return": 92.0,
    },
    "Pendulum-v1": {
        "strategy": "snes",
        "policy": "mlp",
        "hidden_sizes": (32, 32),
        "population_size": 32,
        "num_generations": 1000,
        "sigma": 0.1,
        "episodes_per_member": 8,
        "common_random_numbers": True,
        "normalize_obs": False,
        "eval_episodes": 500,
        "target_return": -165.0,
    },
    # Gymnasium's own envs, in rollout workers. ARS V2-t (Mania et al. 2018): linear
    # policy, observation normalization, the paper's hyperparameters for these tasks.
    "HalfCheetah-v5": {
        "strategy": "ars",
        "policy": "linear",
        "population_size": 64,
        "num_generations": 80,
        "sigma": 0.03,
        "learning_rate": 0.02,
        "strategy_options": {"top_directions": 4},
        "eval_episodes": 5,
    },
    "Hopper-v5": {
        "strategy": "ars",
        "policy": "linear",
        "population_size": 16,
        "num_generations": 400,
        "sigma": 0.025,
        "learning_rate": 0.01,
        "strategy_options": {"top_directions": 4},
        "reward_shift": 1.0,  # the survival bonus, removed in training as ARS does
        "eval_every": 20,
        "eval_episodes": 5,
        "target_return": 3000.0,
    },
    "brax/ant": dict(_BRAX_OPEN_ES),
    "brax/halfcheetah": dict(_BRAX_OPEN_ES),
    "LunarLanderContinuous-v3": {
        "strategy": "pgpe",
        "policy": "linear",
        "population_size": 64,
        "num_generations": 150,
        "sigma": 0.1,
        "episodes_per_member": 2,
        "eval_episodes": 20,
        "target_return": 250.0,
    },
}


def task_defaults(env_id: str, strategy: str | None = None) -> dict[str, Any]:
    """The tuned settings for ``env_id`` (empty for tasks without any).

    ``strategy_options`` belong to the tuned strategy: they are dropped when another
    ``strategy`` is asked for.
    """
    defaults = dict(TASK_DEFAULTS.get(env_id, {}))
    if strategy is not None and strategy != defaults.get("strategy", strategy):
        defaults.pop("strategy_options", None)
    return defaults
