"""`{{ name }}` placeholders in subjects and bodies, filled per recipient.

Deliberately tiny (no logic, no filters, no attribute access): templates come from API
callers, and a template language with expressions would be an injection surface.
Every placeholder is checked against every recipient before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
BUILTINS = frozenset({"to"})


def placeholders(*texts: str | None) -> frozenset[str]:
    return frozenset(name for t in texts if t for name in PLACEHOLDER.findall(t))


def missing(names: frozenset[str], variables: Mapping[str, str] | None) -> list[str]:
    present = variables or {}
    return sorted(n for n in names if n not in present and n not in BUILTINS)


def render(template: str | None, variables: Mapping[str, str] | None, to: str) -> str:
    if not template:
        return ""
    if "{{" not in template:
        return template
    values = {"to": to, **(variables or {})}
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
