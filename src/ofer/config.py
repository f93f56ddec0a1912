"""One configuration base for every settings object (diffusers' ``ConfigMixin`` in dataclass form).

A config is a dataclass that derives from :class:`Config`:

- it is validated when it is constructed (``validate`` runs in ``__post_init__``), so a bad value
  is refused with a one-line :class:`ConfigError` before any work starts;
- ``from_dict`` is strict: unknown keys and missing required keys are refused by name (missing
  keys that have defaults take them, so configs saved by older versions still load);
- ``to_dict`` / ``save`` / ``load`` round-trip through plain JSON.

::

    @dataclass
    class MyConfig(Config):
        steps: int = 10

        def validate(self) -> None:
            require(self.steps >= 1, f"steps must be at least 1, got {self.steps}")
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from .errors import OferError
from .io.atomic import write_text

C = TypeVar("C", bound="Config")


class ConfigError(OferError):
    """A configuration value or file is invalid (one-line message)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def require_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> None:
    """``value`` must be an int (not a bool) within [minimum, maximum]; the message names the option."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bounds = (f" >= {minimum}" if minimum is not None else "") + (f" and <= {maximum}" if maximum is not None else "")
        raise ConfigError(f"{name} must be an integer{bounds}, got {value!r}")


def require_choice(value: Any, name: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


@dataclasses.dataclass
class Config:
    """Base of all dataclass configs: validation at construction, strict dict/JSON round trip."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an invalid value (override; the default accepts everything)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict, where: str = "config") -> C:
        """Build from a dict; unknown or missing required keys raise :class:`ConfigError` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: {cls.__name__} must be a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}")
        missing = [name for name, f in fields.items() if name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{where}: {cls.__name__} lacks {', '.join(missing)}")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: invalid {cls.__name__} ({exc})") from None

    def replace(self: C, **changes) -> C:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable JSON config ({type(exc).__name__})") from None
        return cls.from_dict(data, where=str(path))
