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
from .delivery import BatchResult, BatchSender, DryRunSender, Pipeline
from .mapping import IdempotencyKey, RecordMapper, Unmappable
from .pacing import PROPERTIES_PER_IDENTITY, TRACK_PER_IDENTITY, RateLimiter
from .stats import ProgressLog, SyncStats

logger = logging.getLogger("airbyte")

WORKERS = 4
FLUSH_AFTER_SECONDS = 5.0
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
        self.checkpoints = CheckpointTracker()
        self.stats = SyncStats()
        self.mapper = RecordMapper(config, idempotency_key_for(config, stream))
        track = isinstance(config.api, TrackApi)
        body = RequestBody(config.app_id, config.api.items_field)
        self.builder = BatchBuilder(body, config.max_request_bytes, merge=not track)
        self.dry_run = config.dry_run
        self.limiter = RateLimiter(
            config.max_events_per_minute,
            TRACK_PER_IDENTITY if track else PROPERTIES_PER_IDENTITY,
            key_counts_requests=not track,
        )
        if self.dry_run:
            sender: BatchSender | DryRunSender = DryRunSender(config.endpoint_url, config.dry_run_payloads)
            logger.info("Dry run: nothing is sent to Heap and no STATE is passed on.")
        else:
            sender = BatchSender(
                HeapClient(config.endpoint_url, config.request_timeout_seconds),
                self.limiter,
                body,
                config.app_id,
                config.max_retry_seconds,
                threading.Event(),
            )
        self.pipeline = Pipeline(sender, 1 if self.dry_run else WORKERS, ordered=not track)
        self.progress = ProgressLog(self.stats, config.progress_interval_seconds, lambda: self.limiter.waiting)
        self.states_withheld = 0
        self.fail_on_rejection = config.on_rejected_record == "fail"
        self.since_state = 0
        self.batch_opened = time.monotonic()
        self.rejections_logged = 0
        if stream.destination_sync_mode == DestinationSyncMode.overwrite:
            logger.info("Heap is append-only: overwrite loads like append, and nothing already in Heap is removed.")

    def run(self, messages: Iterable[Message]) -> Iterator[AirbyteMessage]:
        """Sends every record, yielding each STATE once the records before it are settled."""
        self.progress.start()
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
                    yield from self._pass(out)
            yield from self._pass(self._settle(self._submit(self.builder.seal())))
            yield from self._pass(self._settle(self.pipeline.drain()))
        finally:
            self.progress.stop()
            self.pipeline.close()
        if self.dry_run:
            self.progress.log("Dry run finished")
            logger.info("Dry run: %d STATE messages withheld.", self.states_withheld)
        else:
            self.progress.log("Sync finished")
        yield self._summary_message()

    def _pass(self, states: list[AirbyteMessage]) -> list[AirbyteMessage]:
        """The STATE messages to pass on: all of them, or none in a dry run."""
        if self.dry_run:
            self.states_withheld += len(states)
            return []
        return states

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
