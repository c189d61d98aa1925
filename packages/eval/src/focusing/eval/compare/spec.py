"""Setup specs of `focusing compare`: `NAME[:key=value[:key=value...]]`, resolved against the
budget's overrides before anything is trained, so a typo fails in a second and not after an
hour of warm-up.

Shorthands:
- `selector=X`: replaces the setup's selectors at the stage its selectors use
  (`selectors.latent=["X"]` when the setup has latent selectors, else `selectors.output=["X"]`);
- `upsampler=X` -> `upsampler.name=X`; `backend=X` -> `backend.sparse=X`;
  `renderer=X` -> `backend.renderer=X`.
The spec string is the setup's label in the report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

SHORTHANDS = {
    "upsampler": "upsampler.name",
    "backend": "backend.sparse",
    "renderer": "backend.renderer",
}


class CompareError(ValueError):
    """A bad setup spec, budget or folder for `focusing compare` (message says which)."""


def split_specs(text: str) -> list[str]:
    """'a,b:k=[1,2]' -> ['a', 'b:k=[1,2]']: split on commas outside brackets and quotes."""
    out, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    specs = [s for s in out if s]
    if not specs:
        raise CompareError(f"--setups {text!r} names no setup")
    return specs


def _split_overrides(rest: str, spec: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in rest:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == ":" and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    parts = [p.strip() for p in parts]
    for p in parts:
        if "=" not in p or not p.split("=", 1)[0].strip():
            raise CompareError(
                f"setup spec {spec!r}: {p!r} is not of the form key=value "
                f"(e.g. focusing:upsampler=subdivide, focusing:decoder.depth=4)")
    return parts


@dataclass
class SetupSpec:
    """A setup of the comparison: its label, base setup, overrides and resolved config."""

    label: str
    base: str
    overrides: list[str]          # after shorthand expansion, without the budget's
    config: dict = field(repr=False, default_factory=dict)

    @property
    def slug(self) -> str:
        """A file-name-safe form of the label."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.label).strip("_") or "setup"


def parse_spec(spec: str, budget_overrides: list[str] = ()) -> SetupSpec:
    """Resolve 'NAME[:key=value...]' against the budget; raises CompareError naming the spec."""
    from focusing.core.config import ConfigError, load_setup, resolve_setup
    from focusing.core.plugin_system import PluginError

    base, _, rest = spec.partition(":")
    base = base.strip()
    if not base:
        raise CompareError(f"setup spec {spec!r} has no setup name before ':'")
    raw = _split_overrides(rest, spec) if rest.strip() else []
    try:
        budget_setup = resolve_setup(base, list(budget_overrides))
        overrides = []
        for item in raw:
            key, value = (s.strip() for s in item.split("=", 1))
            if key == "selector":
                stage = "latent" if budget_setup.selectors.latent else "output"
                value = value if value.startswith("[") else json.dumps([value])
                overrides.append(f"selectors.{stage}={value}")
            elif key in SHORTHANDS:
                overrides.append(f"{SHORTHANDS[key]}={value}")
            else:
                overrides.append(f"{key}={value}")
        config = load_setup(base, list(budget_overrides) + overrides)
    except (ConfigError, PluginError, FileNotFoundError) as exc:
        raise CompareError(f"setup spec {spec!r}: {exc}") from None
    return SetupSpec(spec, base, overrides, config)


def parse_specs(text: str, budget_overrides: list[str] = ()) -> list[SetupSpec]:
    """Every spec of a --setups string, resolved; labels and folder names must be distinct."""
    specs = [parse_spec(s, budget_overrides) for s in split_specs(text)]
    seen: dict[str, str] = {}
    for s in specs:
        if s.slug in seen:
            raise CompareError(f"setups {seen[s.slug]!r} and {s.label!r} would share a run "
                               f"folder ({s.slug}); name each setup once")
        seen[s.slug] = s.label
    return specs
