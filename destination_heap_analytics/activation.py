"""Heap's objects as Airbyte's Data Activation publishes them: one table of operations, each the API config a
stream mapped to it in the Airbyte UI is loaded with."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from airbyte_cdk.models import ConfiguredAirbyteStream
from airbyte_protocol_dataclasses.models import (
    AirbyteMessage,
    DestinationCatalog,
    DestinationOperation,
    DestinationSyncMode,
    Type,
)
from pydantic import TypeAdapter

from .config import API_MODELS, ApiConfig, HeapConfig, config_error

TEXT = {"type": "string"}
FIELDS = {
    "identity": {**TEXT, "description": "Who the user is in Heap: an email or your own user id, up to 255 characters."},
    "user_id": {**TEXT, "description": "Heap's own user id (from the Heap SDK), a whole number from 0 to 2^53 - 1."},
    "account_id": {**TEXT, "description": "The account's id, as set in Heap's Account ID setting."},
    "event": {**TEXT, "description": "The event's name, such as Order Placed (up to 1024 characters)."},
    "timestamp": {**TEXT, "description": "When it happened: ISO 8601, a date, or epoch seconds or milliseconds."},
    "idempotency_key": {**TEXT, "description": "A key that makes a resent event count once (default: from the row)."},
}
"""Heap's own fields, as the mapping UI shows them; every other mapped field becomes a property."""


@dataclass(frozen=True)
class Operation:
    """One Heap object a stream can be mapped to: its fields, and the API config its records are loaded with."""

    object_name: str
    title: str
    sync_modes: tuple[DestinationSyncMode, ...]
    """What Heap can do with a row of it: Insert (append) or Upsert (append_dedup); never update, which would
    leave absent keys alone (Heap creates them), nor soft_delete."""
    required: tuple[str, ...]
    optional: tuple[str, ...]
    api: dict[str, Any]

    def matching_keys(self, sync_mode: DestinationSyncMode) -> list[list[str]] | None:
        """The keys an upsert matches on: the object's key field."""
        return [[self.required[0]]] if sync_mode == DestinationSyncMode.append_dedup else None

    def published(self) -> list[DestinationOperation]:
        """The operation as `discover` publishes it: once per sync mode it takes."""
        schema = {
            "type": "object",
            "title": self.title,
            "properties": {name: FIELDS[name] for name in (*self.required, *self.optional)},
            "required": list(self.required),
            "additionalProperties": True,
        }
        return [
            DestinationOperation(self.object_name, mode, schema, self.matching_keys(mode)) for mode in self.sync_modes
        ]

    def api_for(self, declared: set[str]) -> ApiConfig:
        """The API config a stream mapped to this object is loaded with: the object's fields by name (the
        optional ones the stream declares, or all of them when its schema declares no columns), every other
        field a property."""
        api = dict(self.api)
        if API_MODELS[api["api_type"]].sends_properties:
            api["property_columns"] = ", ".join(["*", *(f"-{name}" for name in self.required)])
        for name, option in (("timestamp", "timestamp_column"), ("idempotency_key", "idempotency_key_column")):
            if name in self.optional and (name in declared or not declared):
                api[option] = name
        return TypeAdapter(ApiConfig).validate_python(api)


OPERATIONS = (
    Operation(
        "event",
        "Event (by identity)",
        (DestinationSyncMode.append,),
        ("identity", "event"),
        ("timestamp", "idempotency_key"),
        {"api_type": "track", "identity_column": "identity", "event_column": "event"},
    ),
    Operation(
        "event_by_user_id",
        "Event (by Heap user id)",
        (DestinationSyncMode.append,),
        ("user_id", "event"),
        ("timestamp", "idempotency_key"),
        {"api_type": "track", "user_id_column": "user_id", "event_column": "event"},
    ),
    Operation(
        "user_properties",
        "User properties",
        (DestinationSyncMode.append_dedup, DestinationSyncMode.append),
        ("identity",),
        (),
        {"api_type": "add_user_properties", "identity_column": "identity"},
    ),
    Operation(
        "account_properties",
        "Account properties",
        (DestinationSyncMode.append_dedup, DestinationSyncMode.append),
        ("account_id",),
        (),
        {"api_type": "add_account_properties", "account_id_column": "account_id"},
    ),
    Operation(
        "identify",
        "Identify (link a Heap user id to an identity)",
        (DestinationSyncMode.append,),
        ("user_id", "identity"),
        ("timestamp",),
        {"api_type": "identify", "user_id_column": "user_id", "identity_column": "identity"},
    ),
    Operation(
        "user_deletion",
        "User deletion (permanent, every environment)",
        (DestinationSyncMode.append,),
        ("identity",),
        (),
        {"api_type": "user_deletion", "identity_column": "identity"},
    ),
    Operation(
        "user_deletion_by_user_id",
        "User deletion by Heap user id (permanent, every environment)",
        (DestinationSyncMode.append,),
        ("user_id",),
        (),
        {"api_type": "user_deletion", "user_id_column": "user_id"},
    ),
)
"""Heap's objects. Events come as two objects because Heap takes an identity or its own user id, never
both, and a JSON schema's `required` cannot say "exactly one": each object requires the key it sends."""

BY_NAME = {operation.object_name: operation for operation in OPERATIONS}
MODE_WORDS = {
    DestinationSyncMode.append: "Insert",
    DestinationSyncMode.append_dedup: "Upsert",
    DestinationSyncMode.update: "Update",
    DestinationSyncMode.soft_delete: "Soft delete",
    DestinationSyncMode.overwrite: "Overwrite",
}
"""The sync modes as the mapping screen names them."""


def protocol_json(message: AirbyteMessage) -> dict[str, Any]:
    """A protocol dataclass as its JSON: enums as their values, absent fields left out."""
    return asdict(message, dict_factory=_without_none)


def _without_none(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key: value.value if isinstance(value, Enum) else value for key, value in pairs if value is not None}


def catalog_message(config: HeapConfig) -> AirbyteMessage:
    """The DESTINATION_CATALOG message `discover` prints: user deletion only when the config can delete (it has a
    deletion key, and the region is not EU), so that no one maps a stream to it by accident."""
    deletes = config.deletion_refusal() is None
    offered = [operation for operation in OPERATIONS if operation.api["api_type"] != "user_deletion" or deletes]
    catalog = DestinationCatalog([published for operation in offered for published in operation.published()])
    return AirbyteMessage(type=Type.DESTINATION_CATALOG, destination_catalog=catalog)


def api_of(stream: ConfiguredAirbyteStream, label: str, config: HeapConfig) -> ApiConfig:
    """The API config of a stream mapped in the Airbyte UI, or a config error naming the stream and what
    does not fit its object."""
    name = stream.destination_object_name
    operation = BY_NAME.get(name or "")
    if operation is None:
        known = ", ".join(BY_NAME)
        raise config_error(f"Stream '{label}' is mapped to '{name}', which is not a Heap object (they are: {known}).")
    asking = f"stream '{label}' is mapped to {operation.object_name}"
    if operation.api["api_type"] == "user_deletion" and (refusal := config.deletion_refusal(asking)) is not None:
        raise config_error(f"Invalid configuration: {refusal}.")
    mode = stream.destination_sync_mode
    if mode not in operation.sync_modes:
        taken = " or ".join(f"{MODE_WORDS[m]} ({m.value})" for m in operation.sync_modes)
        raise config_error(
            f"Stream '{label}' is mapped to {operation.object_name} as {MODE_WORDS.get(mode, str(mode))} "
            f"({getattr(mode, 'value', mode)}), which Heap cannot do for it: choose {taken} in the connection."
        )
    schema = stream.stream.json_schema or {}
    declared = set(schema.get("properties") or {})
    for field in operation.required:
        if declared and field not in declared:
            raise config_error(
                f"Stream '{label}' is mapped to {operation.object_name} without its required field '{field}': "
                "map a column to it in the connection's mapping."
            )
    key = [list(path) for path in stream.primary_key or []]
    allowed = [[[field] for field in match] for match in operation.matching_keys(mode) or []]
    if key and key not in allowed:
        fields = ", ".join(".".join(path) for path in key)
        keys = operation.matching_keys(mode) or []
        matching = " or ".join(", ".join(match) for match in keys) or "none (it only inserts)"
        raise config_error(
            f"Stream '{label}' matches {operation.object_name} on '{fields}', which is not one of its matching "
            f"keys: {matching}."
        )
    return operation.api_for(declared)
