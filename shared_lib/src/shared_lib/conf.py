"""Configuration from environment variables, read the same way in every service.

    from shared_lib.conf import env, env_bool
    DATABASE_URL = env("DATABASE_URL")            # required: start-up fails naming it
    DEBUG = env_bool("DEBUG", default=False)

A variable `NAME` may instead be given as a file path in `NAME_FILE` (how Kubernetes
and Docker mount secrets), so multi-line values such as PEM keys need no quoting.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_REQUIRED = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class MissingSetting(ImproperlyConfigured):
    """A required environment variable is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Missing required environment variable {name} (or {name}_FILE); "
            "see .env.example for what it means."
        )
        self.name = name


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is not None:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            # Mounted secrets usually end with a newline nobody meant as part of the value.
            return Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return None


def env(name: str, default: str | object = _REQUIRED) -> str:
    """The variable's value; without a default a missing variable stops start-up."""
    value = _raw(name)
    if value is None:
        if default is _REQUIRED:
            raise MissingSetting(name)
        return default  # type: ignore[return-value]
    return value


def env_bool(name: str, *, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(
    name: str,
    *,
    default: int | object = _REQUIRED,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = _raw(name)
    if value is None:
        if default is _REQUIRED:
            raise MissingSetting(name)
        return default  # type: ignore[return-value]
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
    return number


def env_list(name: str, *, default: list[str] | object = _REQUIRED) -> list[str]:
    """A comma-separated list; blanks are dropped."""
    value = _raw(name)
    if value is None:
        if default is _REQUIRED:
            raise MissingSetting(name)
        return list(default)  # type: ignore[call-overload]
    return [item.strip() for item in value.split(",") if item.strip()]
