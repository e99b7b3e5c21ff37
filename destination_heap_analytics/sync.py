"""One write: maps records, drives batching and delivery, and decides when STATE may pass."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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
from .delivery import BatchResult, BatchSender, DryRunSender, Pipeline, RetryPolicy
from .mapping import OTHER_STREAM, IdempotencyKey, RecordMapper, Unmappable, failure_reason
from .messages import MalformedState, Message, State, StreamKey, Unreadable
from .pacing import Pacer
from .stats import ProgressLog, SyncStats, tally

logger = logging.getLogger("airbyte")

WORKERS = 4
FLUSH_AFTER_SECONDS = 5.0
REJECTIONS_LOGGED = 100
SUMMARY_TRACE = "heap_sync_summary"
NAME_SHOWN = 100


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
    return IdempotencyKey(stream.stream.name, stream.stream.namespace, config.api.idempotency_key_column, key_paths)


class Sync:
    """Loads one stream's messages into Heap and yields the STATE messages Heap has made safe."""

    def __init__(self, config: HeapConfig, stream: ConfiguredAirbyteStream) -> None:
        self.config = config
        self.stream_name = stream.stream.name
        self.stream_key: StreamKey = (stream.stream.name, stream.stream.namespace)
        self.checkpoints = CheckpointTracker()
        self.stats = SyncStats()
        self.mapper = RecordMapper(config, idempotency_key_for(config, stream))
        body = RequestBody(config.app_id, config.api.items_field)
        self.builder = BatchBuilder(body, config.max_request_bytes, merge=config.api.last_write_wins)
        self.dry_run = config.dry_run
        self.pacer = Pacer(config.items_per_minute, config.api.identity_limit)
        if self.dry_run:
            sender: BatchSender | DryRunSender = DryRunSender(config.endpoint_url, config.dry_run_payloads)
            logger.info("Dry run: nothing is sent to Heap and no STATE is passed on.")
        else:
            sender = BatchSender(
                HeapClient(config.endpoint_url, config.request_timeout_seconds),
                self.pacer,
                body,
                config.app_id,
                RetryPolicy(config.max_retry_seconds),
                threading.Event(),
                fail_fast=config.on_rejected_record == "fail",
            )
        self.pipeline = Pipeline(sender, 1 if self.dry_run else WORKERS, ordered=config.api.last_write_wins)
        self.progress = ProgressLog(self.stats, config.progress_interval_seconds, lambda: self.pacer.waiting)
        self.states_withheld = 0
        self.fail_on_rejection = config.on_rejected_record == "fail"
        self.batch_opened = time.monotonic()
        self.rejections_logged = 0
        if stream.destination_sync_mode == DestinationSyncMode.overwrite:
            logger.info("Heap is append-only: overwrite loads like append, and nothing already in Heap is removed.")

    def run(self, messages: Iterable[Message]) -> Iterator[AirbyteMessage | dict[str, Any]]:
        """Sends every record, yielding each STATE (as its raw JSON) once the records before it are settled.

        A malformed STATE ends the reading: what came before it is still delivered and checkpointed.
        """
        self.progress.start()
        malformed = None
        try:
            try:
                for message in messages:
                    kind = type(message)
                    if kind is tuple:
                        out = self._record(*message)
                    elif kind is State:
                        out = self._state(message)
                    else:
                        out = self._unreadable(message)
                    if out:
                        yield from self._pass(out)
            except MalformedState as error:
                malformed = error
            yield from self._pass(self._settle(self._submit(self.builder.seal())))
            yield from self._pass(self._settle(self.pipeline.drain()))
        finally:
            self.progress.stop()
            self.pipeline.close()
        if malformed is not None:
            raise malformed
        if self.dry_run:
            self.progress.log("Dry run finished")
            logger.info("Dry run: %d STATE messages withheld.", self.states_withheld)
        else:
            self.progress.log("Sync finished")
        yield self._summary_message()

    def _pass(self, states: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The STATE messages to pass on: all of them, or none in a dry run."""
        if self.dry_run:
            self.states_withheld += len(states)
            return []
        return states

    def _record(self, stream: StreamKey, data: Mapping[str, Any], emitted_at: float) -> list[dict[str, Any]] | None:
        stats = self.stats
        stats.records_read += 1
        position = stats.records_read
        self.checkpoints.received[stream] += 1
        if stream != self.stream_key:
            return self._unmappable(Unmappable(OTHER_STREAM, position), f" ('{stream[0][:NAME_SHOWN]}')")
        try:
            mapped = self.mapper(data, emitted_at, position)
            if type(mapped) is Unmappable:
                return self._unmappable(mapped)
            if not self.builder.batch.items:
                self.batch_opened = time.monotonic()
            full = self.builder.add(mapped)
        except ItemTooLarge:
            return self._unmappable(
                Unmappable(f"item larger than max_request_bytes ({self.config.max_request_bytes})", position)
            )
        except Exception as error:
            return self._unmappable(Unmappable(failure_reason(error), position))
        if mapped.notes:
            stats.adjusted.update(mapped.notes)
        return self._settle(self.pipeline.submit(full)) if full is not None else None

    def _unreadable(self, line: Unreadable) -> None:
        """A line with no usable record: a record of a stream when it names one, else a line counted apart."""
        if line.stream is not None:
            self.stats.records_read += 1
            self.checkpoints.received[line.stream] += 1
            return self._unmappable(Unmappable(line.reason, line.line), what="Input line")
        if self.fail_on_rejection:
            raise config_error(f"Input line {line.line} cannot be read (on_rejected_record is 'fail'): {line.reason}")
        if line.reason not in self.stats.unreadable:
            logger.warning(
                "Input line %d cannot be read: %s. Later ones with this reason are counted, not logged.",
                line.line,
                line.reason,
            )
        tally(self.stats.unreadable, line.reason)
        return None

    def _state(self, state: State) -> list[dict[str, Any]]:
        results = []
        if self.builder.batch.items and time.monotonic() - self.batch_opened >= FLUSH_AFTER_SECONDS:
            results = self._submit(self.builder.seal())
        ready = self.checkpoints.add(state, self.builder.open_number, self.stats.records_read)
        return ready + self._settle(results + self.pipeline.poll())

    def _submit(self, batch: Batch | None) -> list[BatchResult]:
        return self.pipeline.submit(batch) if batch is not None else []

    def _settle(self, results: list[BatchResult]) -> list[dict[str, Any]]:
        ready: list[dict[str, Any]] = []
        for result in results:
            self.stats.add(result)
            for rejection in result.rejections:
                if self.rejections_logged < REJECTIONS_LOGGED:
                    self.rejections_logged += 1
                    logger.warning("Heap rejected record %d: %s", rejection.position, rejection.reason)
            ready += self.checkpoints.settle(result.number)
        return ready

    def _unmappable(self, unmappable: Unmappable, detail: str = "", what: str = "Record") -> None:
        where = f"{what} {unmappable.position}"
        if self.fail_on_rejection:
            raise config_error(f"{where} cannot be sent (on_rejected_record is 'fail'): {unmappable.reason}{detail}")
        if unmappable.reason not in self.stats.unmappable:
            logger.warning(
                "%s cannot be sent to Heap: %s%s. Later ones with this reason are counted, not logged.",
                where,
                unmappable.reason,
                detail,
            )
        tally(self.stats.unmappable, unmappable.reason)

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
