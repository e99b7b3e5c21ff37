"""Which API each catalog stream is loaded into: the config's mappings matched to the catalog once,
before any request, with a config error naming whatever does not match."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteStream

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
    """Every (stream, API) pair the sync loads, in config order."""
    if config.api is not None:
        return _scoped([Route(single_stream(catalog), config.api)])
    found = [Route(_stream_of(mapping, catalog), mapping.api) for mapping in config.mappings]
    mapped = {route.key for route in found}
    for stream in catalog.streams:
        if (stream.stream.name, stream.stream.namespace) not in mapped:
            raise config_error(
                f"Stream '{label(stream)}' is in the connection but no mapping loads it: add a mapping with "
                f'"stream": "{stream.stream.name}", or leave the stream out of the connection.'
            )
    return _scoped(found)


def label(stream: ConfiguredAirbyteStream) -> str:
    """A catalog stream as people read it: `namespace.name`, or the name."""
    name, namespace = stream.stream.name, stream.stream.namespace
    return f"{namespace}.{name}" if namespace else name


def single_stream(catalog: ConfiguredAirbyteCatalog) -> ConfiguredAirbyteStream:
    """The one stream a config with a top-level `api` loads, or a config error naming what was found."""
    if len(catalog.streams) != 1:
        names = ", ".join(f"'{s.stream.name}'" for s in catalog.streams) or "none"
        raise config_error(
            f"The catalog holds {len(catalog.streams)} streams ({names}): the top-level api loads exactly one "
            "stream; select a single stream, or use mappings to say which API each stream goes to."
        )
    return catalog.streams[0]


def _stream_of(mapping: StreamMapping, catalog: ConfiguredAirbyteCatalog) -> ConfiguredAirbyteStream:
    matches = [s for s in catalog.streams if mapping.matches(s.stream.name, s.stream.namespace)]
    if not matches:
        names = ", ".join(sorted(f"'{label(s)}'" for s in catalog.streams)) or "none"
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
    """The routes with the event scope their idempotency keys are made in.

    A fixed event name scopes its keys by that name. A route reading event names from a column is
    scoped by the column only when another such route shares its stream, so the keys of a lone one
    stay those of earlier versions. Two routes that would share keys are a config error.
    """
    by_column = Counter(route.key for route in found if route.api.event_scope[:1] == ("event_column",))
    scoped, seen = [], set()
    for route in found:
        scope = route.api.event_scope
        if scope[:1] == ("event_column",) and by_column[route.key] == 1:
            scope = ()
        if route.api.event_scope:
            if (route.key, scope) in seen:
                raise config_error(
                    f"Two event mappings of stream '{route.label}' send the same events "
                    f"({' '.join(scope) or 'event_column'}): their events would share idempotency keys and "
                    "Heap would keep one; remove one, or send another event name."
                )
            seen.add((route.key, scope))
        scoped.append(Route(route.stream, route.api, scope))
    return scoped
