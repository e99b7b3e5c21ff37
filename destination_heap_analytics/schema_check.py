"""Checks, before any request, that every configured column exists in the stream's JSON schema."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from airbyte_cdk.models import ConfiguredAirbyteStream

from .config import ApiConfig, config_error

logger = logging.getLogger("airbyte")


class SchemaColumns:
    """The dotted paths a JSON schema declares, and the paths below which it allows anything."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.paths: set[str] = set()
        self.open: set[str] = set()
        self._walk(schema, "")
        self.flattened = {path.replace(".", "_") for path in self.paths}

    def _walk(self, schema: Mapping[str, Any], prefix: str) -> None:
        properties = dict(_declared_properties(schema))
        if not properties and prefix:
            self.open.add(prefix)
        for name, inner in properties.items():
            path = f"{prefix}.{name}" if prefix else name
            self.paths.add(path)
            if isinstance(inner, Mapping) and _is_object(inner):
                self._walk(inner, path)

    def has(self, column: str) -> bool:
        """Whether the mapping could find this column in records of this schema."""
        if column in self.paths or column in self.flattened:
            return True
        parts = column.split(".")
        return any(".".join(parts[:end]) in self.open for end in range(1, len(parts)))

    def closest(self, column: str) -> str | None:
        """The declared path most like a misspelt column, if any is close."""
        matches = difflib.get_close_matches(column, sorted(self.paths), n=1, cutoff=0.6)
        return matches[0] if matches else None


def check_columns(api: ApiConfig, stream: ConfiguredAirbyteStream) -> None:
    """Raises a config error naming the first configured column the stream's schema does not declare."""
    schema = stream.stream.json_schema or {}
    if not any(True for _ in _declared_properties(schema)):
        logger.info(
            "Stream '%s' declares no columns in its schema, so configured columns are not checked before the sync.",
            stream.stream.name,
        )
        return
    columns = SchemaColumns(schema)
    for field, column in api.columns:
        if columns.has(column):
            continue
        closest = columns.closest(column)
        hint = f"did you mean '{closest}'?" if closest else f"its columns are: {', '.join(sorted(columns.paths)[:30])}"
        raise config_error(f"{field} '{column}' is not in stream '{stream.stream.name}'; {hint}")


def _declared_properties(schema: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        yield from properties.items()
    for keyword in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(keyword) or ():
            if isinstance(option, Mapping):
                yield from _declared_properties(option)


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    return "object" in kinds or "properties" in schema
