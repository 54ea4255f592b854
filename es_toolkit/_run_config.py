"""Checks shared by the configs of runs (``TrainConfig``, ``OptimizeConfig``): a setting
that cannot work raises a ``ConfigError`` naming its field, and a saved run is continued
only with the changes that keep it the same run."""

import dataclasses
import math
import numbers
from typing import Any


class ConfigError(ValueError):
    """A setting that cannot work; ``field`` names it (the CLI shows the flag instead)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def require_int(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _is_int(value, minimum):
        raise ConfigError(name, f"{name} must be an int >= {minimum}, got {value!r}.")


def require_positive(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not (_is_real(value) and value > 0):
        raise ConfigError(name, f"{name} must be a positive finite float, got {value!r}.")


def require_finite(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _is_real(value):
        raise ConfigError(name, f"{name} must be a finite float, got {value!r}.")


def require_choice(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise ConfigError(
            name, f"{name} must be one of {', '.join(sorted(choices))}, got {value!r}."
        )


def require_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(name, f"{name} must be True or False, got {value!r}.")


def field_named_in(message: str, config_type: type) -> str:
    """The first field of ``config_type`` that ``message`` names ("" if none)."""
    names = {field.name for field in dataclasses.fields(config_type)}
    return next((word for word in message.replace(",", " ").split() if word in names), "")


def resume_config(saved: Any, given: Any, where: str, resumable: tuple[str, ...], done: int) -> Any:
    """The config a resumed run continues with: ``saved`` (a dataclass) itself when
    ``given`` is None, else ``saved`` with ``given``'s values of the ``resumable`` fields.

    Raises:
        ConfigError: ``given`` differs from ``saved`` in a field that defines the run, or
            asks for fewer generations than the ``done`` ones.
    """
    if given is None:
        return saved
    conflicts = [
        (field.name, getattr(saved, field.name), getattr(given, field.name))
        for field in dataclasses.fields(saved)
        if field.name not in resumable and getattr(saved, field.name) != getattr(given, field.name)
    ]
    if conflicts:
        details = ", ".join(f"{name}: saved {a!r}, given {b!r}" for name, a, b in conflicts)
        raise ConfigError(conflicts[0][0], f"cannot resume {where}: it is another run ({details}).")
    config = dataclasses.replace(saved, **{name: getattr(given, name) for name in resumable})
    if config.num_generations < done:
        raise ConfigError(
            "num_generations",
            f"num_generations must be at least {done}, the generations the run in {where} has "
            f"done, got {config.num_generations}.",
        )
    return config


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
