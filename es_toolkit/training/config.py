"""What a training run is: ``TrainConfig``, checked when it is made, and how a saved run
may be continued.

A config that cannot train (no episodes per member, a NaN learning rate, zero evaluation
episodes, ...) is refused with a ``ConfigError`` naming the field, before any work starts.
"""

import dataclasses
from typing import Any

from es_toolkit import _run_config as run_config
from es_toolkit import strategies as strategies_lib
from es_toolkit._run_config import ConfigError
from es_toolkit.policies import POLICIES, Policy, make_policy
from es_toolkit.tracking.run_loggers import check_logger_names
from es_toolkit.training.defaults import task_defaults

# Fields a resumed run may change: they do not alter the numbers of the generations run
# (loggers only say where else the numbers go).
RESUMABLE_FIELDS = ("num_generations", "num_workers", "devices", "loggers")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    env: str = "CartPole-v1"
    strategy: str = "open_es"
    policy: str = "linear"
    hidden_sizes: tuple[int, ...] = (32, 32)
    population_size: int = 64
    num_generations: int = 100
    sigma: float | None = None  # None: the strategy's default
    learning_rate: float | None = None  # None: the strategy's default
    episodes_per_member: int = 1
    eval_every: int = 10
    eval_episodes: int = 10
    final_eval_episodes: int = 100
    normalize_obs: bool = True
    common_random_numbers: bool = False
    target_return: float | None = None  # stop once the mean policy's evaluation reaches it
    seed: int = 0
    backend: str = "auto"  # a name in training.backends.BACKENDS, or "auto"
    num_workers: int | None = None  # Gymnasium rollout worker processes (default: one per core)
    max_episode_steps: int | None = None  # episode length cap (default: the env's time limit)
    reward_shift: float = 0.0  # subtracted from every step's reward in training fitness (ARS)
    strategy_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. ARS's b
    devices: int | None = None  # shard each generation over this many devices (JAX envs)
    loggers: tuple[str, ...] = ()  # also log to "tensorboard", "wandb" (es_toolkit.tracking)

    def __post_init__(self):
        if isinstance(self.hidden_sizes, list):
            object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        object.__setattr__(self, "loggers", check_logger_names(self.loggers))
        _check(self)

    @classmethod
    def for_env(cls, env: str, **overrides: Any) -> "TrainConfig":
        """The tuned config for ``env`` (see ``training.defaults``) with ``overrides``."""
        defaults = task_defaults(env, overrides.get("strategy"))
        options = {**defaults.get("strategy_options", {}), **overrides.get("strategy_options", {})}
        return cls(**{**defaults, **overrides, "env": env, "strategy_options": options})

    def to_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "hidden_sizes": list(self.hidden_sizes),
            "loggers": list(self.loggers),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        return cls(**data)


def build_strategy(config: TrainConfig) -> strategies_lib.EvolutionStrategy:
    """The named strategy with the config's sigma and learning rate where given."""
    options = {"sigma": config.sigma, "learning_rate": config.learning_rate}
    options = {name: value for name, value in options.items() if value is not None}
    factory = strategies_lib.get_strategy(config.strategy)
    return factory(config.population_size, **{**options, **config.strategy_options})


def build_policy(config: TrainConfig, observation_space: Any, action_space: Any) -> Policy:
    """The config's policy for these spaces."""
    return make_policy(config.policy, observation_space, action_space, **policy_options(config))


def policy_options(config: TrainConfig) -> dict[str, Any]:
    """The options of ``make_policy`` the config sets."""
    return {"hidden_sizes": config.hidden_sizes} if config.policy == "mlp" else {}


def resume_config(
    saved: TrainConfig, given: TrainConfig | None, where: str, done: int = 0
) -> TrainConfig:
    """``saved`` with the changes of ``given`` that a resumed run may make (see
    ``RESUMABLE_FIELDS``); a ``ConfigError`` for any other change."""
    return run_config.resume_config(saved, given, where, RESUMABLE_FIELDS, done)


def _check(config: TrainConfig) -> None:
    run_config.require_choice("strategy", config.strategy, strategies_lib.STRATEGIES)
    run_config.require_choice("policy", config.policy, POLICIES)
    run_config.require_choice("backend", config.backend, _backend_names())
    if not isinstance(config.env, str) or not config.env:
        raise ConfigError("env", f"env must be an environment id, got {config.env!r}.")
    if not config.hidden_sizes or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in config.hidden_sizes
    ):
        raise ConfigError(
            "hidden_sizes", f"hidden_sizes must be ints >= 1, got {config.hidden_sizes!r}."
        )
    for name, minimum in (
        ("population_size", 2),
        ("num_generations", 1),
        ("episodes_per_member", 1),
        ("eval_every", 1),
        ("eval_episodes", 1),
        ("final_eval_episodes", 1),
        ("seed", 0),
    ):
        run_config.require_int(name, getattr(config, name), minimum)
    for name in ("num_workers", "max_episode_steps", "devices"):
        run_config.require_int(name, getattr(config, name), 1, optional=True)
    run_config.require_positive("sigma", config.sigma, optional=True)
    run_config.require_positive("learning_rate", config.learning_rate, optional=True)
    run_config.require_finite("reward_shift", config.reward_shift)
    run_config.require_finite("target_return", config.target_return, optional=True)
    run_config.require_bool("normalize_obs", config.normalize_obs)
    run_config.require_bool("common_random_numbers", config.common_random_numbers)
    if not isinstance(config.strategy_options, dict):
        raise ConfigError(
            "strategy_options", f"strategy_options must be a dict, got {config.strategy_options!r}."
        )
    try:
        build_strategy(config)
    except (TypeError, ValueError) as error:
        raise ConfigError(run_config.field_named_in(str(error), TrainConfig), str(error)) from None


def _backend_names() -> tuple[str, ...]:
    from es_toolkit.training.backends import BACKENDS

    return ("auto", *BACKENDS)
