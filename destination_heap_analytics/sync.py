"""One write: maps records, drives batching and delivery, and decides when STATE may pass."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson
from airbyte_cdk.models import (
    AirbyteAnalyticsTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream,
    DestinationSyncMode,
    TraceType,
    Type,
)

from .batching import Batch, BatchBuilder, ItemTooLarge, RequestBody
from .checkpoint import CheckpointTracker
from .client import HeapClient
from .config import HeapConfig, TrackApi, config_error
from .delivery import BatchResult, BatchSender, Pipeline
from .mapping import IdempotencyKey, RecordMapper, Unmappable
from .pacing import PROPERTIES_PER_IDENTITY, TRACK_PER_IDENTITY, RateLimiter
from .stats import SyncStats

logger = logging.getLogger("airbyte")

WORKERS = 4
FLUSH_AFTER_SECONDS = 5.0
PROGRESS_EVERY_SECONDS = 30.0
REJECTIONS_LOGGED = 100
SUMMARY_TRACE = "heap_sync_summary"

Record = tuple[str, Mapping[str, Any], int]
"""A record as the sync reads it: stream name, data, emitted_at in epoch milliseconds."""


class InvalidLine(NamedTuple):
    """An input line that is not JSON: counted, since it may have held a record."""

    number: int


Message = Record | AirbyteMessage | InvalidLine
"""A record, a STATE message, or a line that could not be read."""


def single_stream(catalog: ConfiguredAirbyteCatalog) -> ConfiguredAirbyteStream:
    """The one stream a connection loads, or a config error naming what was found."""
    if len(catalog.streams) != 1:
        names = ", ".join(f"'{s.stream.name}'" for s in catalog.streams) or "none"
        raise config_error(
            f"The catalog holds {len(catalog.streams)} streams ({names}): one Heap connection loads "
            "exactly one stream; select a single stream, or make one connection per stream."
        )
    return catalog.streams[0]


def idempotency_key_for(config: HeapConfig, stream: ConfiguredAirbyteStream) -> IdempotencyKey | None:
    """How track events of this stream get their idempotency keys."""
    if not isinstance(config.api, TrackApi):
        return None
    primary_key = stream.primary_key or stream.stream.source_defined_primary_key or []
    cursor = stream.cursor_field or stream.stream.default_cursor_field or []
    key_paths = [list(path) for path in primary_key]
    if key_paths and cursor:
        key_paths.append(list(cursor))
    return IdempotencyKey(stream.stream.name, config.api.idempotency_key_column, key_paths)


class Sync:
    """Loads one stream's messages into Heap and yields the STATE messages Heap has made safe."""

    def __init__(self, config: HeapConfig, stream: ConfiguredAirbyteStream) -> None:
        self.config = config
        self.stream_name = stream.stream.name
        self.mapper = RecordMapper(config, idempotency_key_for(config, stream))
        track = isinstance(config.api, TrackApi)
        body = RequestBody(config.app_id, config.api.items_field)
        self.builder = BatchBuilder(body, config.max_request_bytes, merge=not track)
        limiter = RateLimiter(
            config.max_events_per_minute,
            TRACK_PER_IDENTITY if track else PROPERTIES_PER_IDENTITY,
            key_counts_requests=not track,
        )
        sender = BatchSender(
            HeapClient(config.endpoint_url, config.request_timeout_seconds),
            limiter,
            body,
            config.app_id,
            config.max_retry_seconds,
            threading.Event(),
        )
        self.pipeline = Pipeline(sender, WORKERS, ordered=not track)
        self.checkpoints = CheckpointTracker()
        self.stats = SyncStats()
        self.fail_on_rejection = config.on_rejected_record == "fail"
        self.since_state = 0
        self.batch_opened = time.monotonic()
        self.rejections_logged = 0
        if stream.destination_sync_mode == DestinationSyncMode.overwrite:
            logger.info("Heap is append-only: overwrite loads like append, and nothing already in Heap is removed.")

    def run(self, messages: Iterable[Message]) -> Iterator[AirbyteMessage]:
        """Sends every record, yielding each STATE once the records before it are settled."""
        started = time.monotonic()
        next_progress = started + PROGRESS_EVERY_SECONDS
        stats = self.stats
        try:
            for message in messages:
                kind = type(message)
                if kind is tuple:
                    out = self._record(*message)
                elif kind is InvalidLine:
                    out = self._unmappable(Unmappable("not valid JSON", message.number), "Input line")
                else:
                    out = self._state(message)
                if out:
                    yield from out
                if stats.records_read % 1000 == 0 and time.monotonic() >= next_progress:
                    self._log_progress("Progress", started)
                    next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
            yield from self._settle(self._submit(self.builder.seal()))
            yield from self._settle(self.pipeline.drain())
        finally:
            self.pipeline.close()
        self._log_progress("Sync finished", started)
        yield self._summary_message()

    def _record(self, stream: str, data: Mapping[str, Any], emitted_at: int) -> list[AirbyteMessage] | None:
        stats = self.stats
        stats.records_read += 1
        self.since_state += 1
        if stream != self.stream_name:
            return self._unmappable(
                Unmappable(f"record of stream '{stream}', which is not in the catalog", stats.records_read)
            )
        mapped = self.mapper(data, emitted_at, stats.records_read)
        if type(mapped) is Unmappable:
            return self._unmappable(mapped)
        if mapped.notes:
            stats.adjusted.update(mapped.notes)
        if not self.builder.batch.items:
            self.batch_opened = time.monotonic()
        try:
            full = self.builder.add(mapped)
        except ItemTooLarge as error:
            return self._unmappable(
                Unmappable(f"item larger than max_request_bytes ({self.config.max_request_bytes})", error.item.position)
            )
        return self._settle(self.pipeline.submit(full)) if full is not None else None

    def _state(self, message: AirbyteMessage) -> list[AirbyteMessage]:
        if message.type != Type.STATE:
            return []
        results = []
        if self.builder.batch.items and time.monotonic() - self.batch_opened >= FLUSH_AFTER_SECONDS:
            results = self._submit(self.builder.seal())
        ready = self.checkpoints.add(message, self.builder.open_number, self.since_state)
        self.since_state = 0
        return ready + self._settle(results + self.pipeline.poll())

    def _submit(self, batch: Batch | None) -> list[BatchResult]:
        return self.pipeline.submit(batch) if batch is not None else []

    def _settle(self, results: list[BatchResult]) -> list[AirbyteMessage]:
        ready: list[AirbyteMessage] = []
        for result in results:
            self.stats.add(result)
            for rejection in result.rejections:
                if self.fail_on_rejection:
                    raise config_error(
                        f"Heap rejected record {rejection.position} (on_rejected_record is 'fail'): {rejection.reason}"
                    )
                if self.rejections_logged < REJECTIONS_LOGGED:
                    self.rejections_logged += 1
                    logger.warning("Heap rejected record %d: %s", rejection.position, rejection.reason)
            ready += self.checkpoints.settle(result.number)
        return ready

    def _unmappable(self, unmappable: Unmappable, what: str = "Record") -> None:
        where = f"{what} {unmappable.position}"
        if self.fail_on_rejection:
            raise config_error(f"{where} cannot be sent (on_rejected_record is 'fail'): {unmappable.reason}")
        if unmappable.reason not in self.stats.unmappable:
            logger.warning(
                "%s cannot be sent to Heap: %s. Later ones with this reason are counted, not logged.",
                where,
                unmappable.reason,
            )
        self.stats.unmappable[unmappable.reason] += 1

    def _log_progress(self, label: str, started: float) -> None:
        stats = self.stats
        elapsed = max(time.monotonic() - started, 1e-9)
        logger.info(
            "%s: %d records read, %d delivered, %d rejected by Heap, %d not sendable, "
            "%d requests (%d throttled, %d retried), %.0f records/s, %.1fs waiting on rate limits. %s",
            label,
            stats.records_read,
            stats.records_delivered,
            stats.records_rejected,
            stats.records_unmappable,
            stats.requests,
            stats.throttled,
            stats.retries,
            stats.records_delivered / elapsed,
            stats.paced_seconds,
            _reasons(stats),
        )

    def _summary_message(self) -> AirbyteMessage:
        return AirbyteMessage(
            type=Type.TRACE,
            trace=AirbyteTraceMessage(
                type=TraceType.ANALYTICS,
                emitted_at=time.time() * 1000,
                analytics=AirbyteAnalyticsTraceMessage(
                    type=SUMMARY_TRACE, value=orjson.dumps(self.stats.summary()).decode()
                ),
            ),
        )


def _reasons(stats: SyncStats) -> str:
    parts = [f"rejected: {reason} x{count}" for reason, count in stats.rejected.items()]
    parts += [f"not sendable: {reason} x{count}" for reason, count in stats.unmappable.items()]
    parts += [f"adjusted: {note} x{count}" for note, count in stats.adjusted.items()]
    return "; ".join(parts)
