"""Which API each catalog stream is loaded into: the config's mappings matched to the catalog once,
before any request, with a config error naming whatever does not match."""

from __future__ import annotations

from dataclasses import dataclass

from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteStream

from .activation import api_of
from .config import ApiConfig, HeapConfig, StreamMapping, config_error
from .mapping import IdempotencyKey
from .messages import StreamKey


@dataclass(frozen=True)
class Route:
    """One catalog stream loaded into one API."""

    stream: ConfiguredAirbyteStream
    api: ApiConfig
    event_scope: tuple[str, ...] = ()

    @property
    def key(self) -> StreamKey:
        """The stream's name and namespace, as records carry them."""
        return (self.stream.stream.name, self.stream.stream.namespace)

    @property
    def label(self) -> str:
        """The stream as people read it: `namespace.name`, or the name."""
        return label(self.stream)

    def idempotency_key(self) -> IdempotencyKey:
        """How this route's events get idempotency keys: from the stream, its key columns, and the event
        scope that keeps two event mappings of one stream apart."""
        stream = self.stream
        primary_key = stream.primary_key or stream.stream.source_defined_primary_key or []
        cursor = stream.cursor_field or stream.stream.default_cursor_field or []
        key_paths = [list(path) for path in primary_key]
        if key_paths and cursor:
            key_paths.append(list(cursor))
        column = getattr(self.api, "idempotency_key_column", None)
        return IdempotencyKey(stream.stream.name, stream.stream.namespace, column, key_paths, self.event_scope)


def routes(config: HeapConfig, catalog: ConfiguredAirbyteCatalog) -> list[Route]:
    """Every (stream, API) pair the sync loads: streams mapped to a Heap object in the Airbyte UI (Data
    Activation) by their object, the others by the config's `api` or `mappings`, in config order."""
    activated = [
        Route(stream, api_of(stream, label(stream), config)) for stream in catalog.streams if _activated(stream)
    ]
    others = [stream for stream in catalog.streams if not _activated(stream)]
    if config.api is not None:
        if others or not activated:
            activated.append(Route(single_stream(others), config.api))
        return _scoped(activated)
    by_name: dict[str, list[ConfiguredAirbyteStream]] = {}
    for stream in others:
        by_name.setdefault(stream.stream.name, []).append(stream)
    found = [Route(_stream_of(mapping, by_name, catalog), mapping.api) for mapping in config.mappings]
    mapped = {route.key for route in found}
    for stream in others:
        if (stream.stream.name, stream.stream.namespace) not in mapped:
            raise config_error(
                f"Stream '{label(stream)}' is in the connection but nothing loads it: map it to a Heap object in "
                f'the connection (Data Activation), or add a mapping with "stream": "{stream.stream.name}"'
                + (f', "namespace": "{stream.stream.namespace}"' if stream.stream.namespace else "")
                + ", or leave the stream out of the connection."
            )
    return _scoped(activated + found)


def _activated(stream: ConfiguredAirbyteStream) -> bool:
    """Whether the stream was mapped to a Heap object in the Airbyte UI."""
    return bool(stream.destination_object_name)


def label(stream: ConfiguredAirbyteStream) -> str:
    """A catalog stream as people read it: `namespace.name`, or the name."""
    name, namespace = stream.stream.name, stream.stream.namespace
    return f"{namespace}.{name}" if namespace else name


def single_stream(streams: list[ConfiguredAirbyteStream]) -> ConfiguredAirbyteStream:
    """The one stream (not mapped in the Airbyte UI) a config with a top-level `api` loads, or a config error
    naming what was found."""
    if len(streams) != 1:
        names = ", ".join(f"'{s.stream.name}'" for s in streams) or "none"
        raise config_error(
            f"The catalog holds {len(streams)} streams ({names}): the top-level api loads exactly one "
            "stream; select a single stream, or use mappings to say which API each stream goes to."
        )
    return streams[0]


def _stream_of(
    mapping: StreamMapping, by_name: dict[str, list[ConfiguredAirbyteStream]], catalog: ConfiguredAirbyteCatalog
) -> ConfiguredAirbyteStream:
    """The catalog stream a mapping loads. A mapping without a namespace takes the stream of that name
    without one, or else the only stream of that name."""
    named = by_name.get(mapping.stream, [])
    if mapping.namespace is not None:
        matches = [s for s in named if s.stream.namespace == mapping.namespace]
    else:
        matches = [s for s in named if s.stream.namespace is None] or named
    if not matches:
        names = ", ".join(sorted(f"'{label(s)}'" for s in catalog.streams)[:30]) or "none"
        raise config_error(
            f"The mapping for stream '{mapping.label}' names a stream the connection does not have "
            f"(it has {names}); check the stream name and namespace."
        )
    if len(matches) > 1:
        namespaces = ", ".join(sorted(f"'{s.stream.namespace}'" for s in matches))
        raise config_error(
            f"Stream '{mapping.stream}' is in several namespaces ({namespaces}): give its mapping a namespace."
        )
    return matches[0]


def _scoped(found: list[Route]) -> list[Route]:
    """The routes with the event scope their idempotency keys are made in, each from its own mapping alone,
    so adding or removing a mapping never changes another's keys.

    A fixed event name scopes its keys by that name. A route reading event names from a column has no
    scope: its keys are those of every earlier version. Two routes that would share keys are a
    config error.
    """
    scoped, seen = [], set()
    for route in found:
        scope = route.api.event_scope
        if scope[:1] == ("event_column",):
            scope = ()
        if route.api.event_scope:
            if (route.key, scope) in seen:
                raise config_error(
                    f"Two event mappings of stream '{route.label}' would give their events the same idempotency "
                    f"keys ({' '.join(scope) or 'both read event names from a column'}), and Heap would keep one "
                    "of each pair: remove one, or give one of them a fixed event_name."
                )
            seen.add((route.key, scope))
        scoped.append(Route(route.stream, route.api, scope))
    return scoped
