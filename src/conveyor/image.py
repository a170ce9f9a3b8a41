"""A queue's runtime environment (DESIGN A9): the Python packages its processes import.

``Image`` is what a user writes in ``@task_queue(image=Image(...))``; it travels in the stub's
config as a JSON object and is validated the same way wherever it is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigError

PACKAGES_MAX = 500
COMMANDS_MAX = 50
ITEM_MAX = 1000
_PYTHON_VERSION = re.compile(r"3\.\d{1,2}(\.\d{1,3})?")


@dataclass(frozen=True, slots=True, init=False)
class Image:
    """The environment a queue's processes run in: its own packages, nothing of the agent's.

    ``python_packages``: requirement strings (``"pillow==11.0.0"``, ``"six>=1.16"``);
    ``requirements``: a requirements file, relative to the code folder; ``python_version``:
    ``"3.12"`` (None: the agent's own Python); ``commands``: shell lines run once in the
    environment after the packages are installed.
    """

    python_packages: tuple[str, ...]
    requirements: str | None
    python_version: str | None
    commands: tuple[str, ...]

    def __init__(
        self,
        python_packages: Iterable[str] = (),
        requirements: str | None = None,
        python_version: str | None = None,
        commands: Iterable[str] = (),
    ) -> None:
        object.__setattr__(self, "python_packages", _strings("python_packages", python_packages,
                                                             PACKAGES_MAX))  # fmt: skip
        object.__setattr__(self, "requirements", requirements)
        object.__setattr__(self, "python_version", python_version)
        object.__setattr__(self, "commands", _strings("commands", commands, COMMANDS_MAX))
        if requirements is not None and not (
            isinstance(requirements, str)
            and 0 < len(requirements) <= ITEM_MAX
            and not requirements.startswith("/")
            and ".." not in requirements.split("/")
        ):
            raise ConfigError(
                "image.requirements must be a file path relative to the code folder, got "
                f"{requirements!r:.80}"
            )
        if python_version is not None and not (
            isinstance(python_version, str) and _PYTHON_VERSION.fullmatch(python_version)
        ):
            raise ConfigError(
                f"image.python_version must look like '3.12', got {python_version!r:.80}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "python_packages": list(self.python_packages),
            "requirements": self.requirements,
            "python_version": self.python_version,
            "commands": list(self.commands),
        }

    @classmethod
    def from_value(cls, value: object) -> Image:
        """An ``Image`` as it is, or one from a JSON object of its fields."""
        if isinstance(value, Image):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"image must be an object of Image's fields, got {value!r:.80}")
        unknown = sorted(str(key) for key in set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"image has unknown keys: {', '.join(unknown)}")
        return cls(**value)


def _strings(name: str, values: Iterable[str], most: int) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ConfigError(f"image.{name} must be a list of strings, got {values!r:.80}")
    items = tuple(values)
    if len(items) > most:
        raise ConfigError(f"image.{name} holds at most {most} items, got {len(items)}")
    for item in items:
        if not isinstance(item, str) or not 0 < len(item) <= ITEM_MAX or "\x00" in item:
            raise ConfigError(
                f"image.{name} must hold non-empty strings of at most {ITEM_MAX} characters, "
                f"got {item!r:.80}"
            )
    return items
