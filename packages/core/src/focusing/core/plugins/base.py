"""The contract every registered class honours: a unique `name` and an honest `available()`."""

from __future__ import annotations

from typing import ClassVar


class Plugin:
    """Base of every plugin class; subclasses set `name` and may override `available`."""

    name: ClassVar[str] = ""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Return (usable here, reason or install hint when not)."""
        return True, ""
