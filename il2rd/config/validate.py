"""ConfigError, and the checks of single config values that every part of the config uses.

Each check takes the dotted key it is checking, so that a bad value raises ConfigError naming
the key, the value given and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

class ConfigError(ValueError):
    """A config value that is not allowed: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {_show(value)}: {allowed}")

def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return repr(value)

def number(key: str, value: Any, *, low: float | None = None, low_open=False, high: float | None = None, unit=""):
    rule = []
    if low is not None:
        rule.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        rule.append(f"<= {high:g}")
    allowed = f"must be a finite number {' and '.join(rule)}{' (' + unit + ')' if unit else ''}".replace("number  ", "number ")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(key, value, allowed)
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(key, value, allowed)
    if high is not None and value > high:
        raise ConfigError(key, value, allowed)
    return float(value)

def integer(key: str, value: Any, *, low: int = 0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(key, value, f"must be an integer >= {low}")
    return int(value)

def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "must be true or false")
    return value

def choice(key: str, value: Any, allowed: tuple[str, ...]):
    if value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(allowed)}")
    return value

def vector3(key: str, value: Any, unit="um"):
    if not isinstance(value, (list, tuple, ListConfig)) or len(value) != 3:
        raise ConfigError(key, value, f"must be a list of 3 numbers ({unit})")
    return tuple(number(f"{key}[{i}]", v, unit=unit) for i, v in enumerate(value))
