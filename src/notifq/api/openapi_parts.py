"""Pieces shared by the OpenAPI modules (openapi.py and openapi_ops.py)."""

from __future__ import annotations

from typing import Final

BEARER: Final[list[dict[str, list[str]]]] = [{"bearerAuth": []}]
PUBLIC: Final[list[dict[str, list[str]]]] = []


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}
