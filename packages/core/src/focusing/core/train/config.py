"""Compatibility name: the setup code lives in focusing.core.config."""

from focusing.core.config import (  # noqa: F401
    ConfigError, Setup, dumps, load_defaults, load_setup, merge_setup, parse_override,
    resolve_setup, setup_path, validate,
)
