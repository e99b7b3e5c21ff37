"""One write: maps records through their routes, drives batching and delivery, and decides when STATE may pass."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from airbyte_cdk.models import (
    AirbyteAnalyticsTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    DestinationSyncMode,
    TraceType,
    Type,
)

from .batching import Batch, BatchBuilder, BatchNumbers, ItemTooLarge, RequestBody
from .changes import Changes, Snapshot, changes_for
from .checkpoint import CheckpointTracker, Tally
from .client import HeapClient
from .config import ApiConfig, HeapConfig, UserDeletionApi, config_error
from .deletion import DeletionLane
from .delivery import Accepted, BatchResult, BatchSender, DryRunSender, FailFast, Pipeline, RetryPolicy, Stopped
from .mapping import OTHER_STREAM, HeapItem, RecordMapper, Unmappable, failure_reason, mapper_for
from .messages import (
    MalformedState,
    Record,
    State,
    StreamEnded,
    StreamKey,
    Tick,
    Unreadable,
    record_of,
    shown,
    stream_words,
)
from .pacing import AppRate, Pacer, WaitClock
from .rejected import NoStore, RejectedRecord, S3Store
from .routing import Route
from .stats import MappingStats, ProgressLog, RejectionLog, SyncStats, tally

logger = logging.getLogger("airbyte")

FLUSH_AFTER_SECONDS = 5.0
"""A batch open this long is sent at the next tick, however few items it holds."""
TICK_SECONDS = 1.0
HELD_STATE_BYTES = 64 * 1024 * 1024
HELD_STATES = 10_000
"""Past either, reading pauses until STATEs pass: held STATEs never grow without bound, and none is dropped."""
SUMMARY_TRACE = "heap_sync_summary"


class AppPacing:
    """The app id's pace: one ceiling shared by every API when `max_events_per_minute` is set, else each
    API's documented one (track's 15,000 a minute; none for the property APIs)."""

    def __init__(self, items_per_minute: int | None, fail_fast: bool) -> None:
        self.shared = AppRate(items_per_minute) if items_per_minute else None
        self.lock = threading.Lock()
        self.fail_fast = FailFast() if fail_fast else None

    def rate_of(self, api: ApiConfig) -> AppRate:
        """The rate an API's requests are paced at."""
        return self.shared or AppRate(api.items_per_minute)


class Lane:
    """One API's batching, pacing and sending, fed by every mapping to that API."""

    drains_last = False
    waiting = "in flight"

    def __init__(
        self,
        config: HeapConfig,
        api: ApiConfig,
        numbers: BatchNumbers,
        stop: threading.Event,
        app: AppPacing,
        waits: WaitClock,
        snapshot: Snapshot | None = None,
    ) -> None:
        body = RequestBody(config.app_id, api.items_field)
        self.key = api.endpoint
        self.api_type = api.api_type
        self.url = config.endpoint_url(api)
        self.pacer = Pacer(app.rate_of(api), api.identity_limit, app.lock, waits=waits)
        self.snapshot = snapshot
        self.accepted = Accepted(changes=snapshot is not None and snapshot.writable)
        max_items = 1 if body.single else self.pacer.app.burst
        self.builder = BatchBuilder(body, config.max_request_bytes, api.last_write_wins, numbers, max_items=max_items)
        if config.dry_run:
            sender: BatchSender | DryRunSender = DryRunSender(self.url, config.dry_run_payloads, self.accepted)
        else:
            sender = BatchSender(
                HeapClient(self.url, config.request_timeout_seconds),
                self.pacer,
                body,
                config.app_id,
                RetryPolicy(config.max_retry_seconds),
                stop,
                fail_fast=app.fail_fast,
                accepted=self.accepted,
            )
        self.pipeline = Pipeline(sender, 1 if config.dry_run else api.workers, ordered=api.ordered)

    def submit(self, batch: Batch | None) -> list[BatchResult]:
        """Starts sending a batch, if any, once the snapshot has durably marked its keys sent; returns the results
        that completed meanwhile."""
        if batch is None:
            return []
        if self.snapshot is not None:
            self.snapshot.commit()
        return self.pipeline.submit(batch)


def lane_for(
    config: HeapConfig,
    api: ApiConfig,
    numbers: BatchNumbers,
    stop: threading.Event,
    app: AppPacing,
    stats: SyncStats,
    snapshot: Snapshot | None,
) -> Lane | DeletionLane:
    """The lane of an API: deletions are held to the end of the input and guarded; the others are sent as
    batches fill."""
    if isinstance(api, UserDeletionApi):
        return DeletionLane(config, api, numbers, stop, stats.waits, snapshot, stats.deletions)
    return Lane(config, api, numbers, stop, app, stats.waits, snapshot)


ALL_REFUSED_EARLY = 100
"""A mapping whose first this many records all fail one rule on one column, none mapped, stops the sync."""
ALL_REFUSED_AT_END = 10
"""At the end of the input, a mapping that mapped none of at least this many records, all failing one rule on
one column, fails the sync."""


class Delivery:
    """One mapping of a stream to a lane, the last of the lane's batches its records were noted in, and whether
    every record so far failed one mapping rule (a misspelt column, a column of the wrong kind)."""

    __slots__ = ("api_type", "changes", "label", "lane", "mapped", "mapper", "noted", "refusal", "refusals", "stats")

    def __init__(
        self,
        mapper: RecordMapper,
        lane: Lane,
        label: str,
        api_type: str,
        stats: MappingStats,
        changes: Changes | None = None,
    ) -> None:
        self.mapper = mapper
        self.changes = changes
        self.lane = lane
        self.label = label
        self.api_type = api_type
        self.stats = stats
        self.noted = 0
        self.mapped = False
        self.refusal: tuple[str, str] | None = None
        self.refusals = 0

    def refused(self, unmappable: Unmappable) -> None:
        """Counts a record this mapping could not map; a config error once the first ALL_REFUSED_EARLY all
        failed the same rule on the same column."""
        if self.mapped:
            return
        rule = (unmappable.reason, unmappable.field)
        if unmappable.field is None or (self.refusal is not None and rule != self.refusal):
            self.mapped = True  # not one rule on one column: records fail one by one, as records do
            return
        self.refusal = rule  # type: ignore[assignment]
        self.refusals += 1
        if self.refusals >= ALL_REFUSED_EARLY:
            raise self.all_refused()

    def all_refused(self) -> BaseException:
        """The config error for a mapping none of whose records could be mapped, for one reason."""
        reason, field = self.refusal or ("", "")
        return config_error(
            f"None of the {self.refusals} records of stream '{shown(self.label)}' read so far could be mapped to "
            f"{self.api_type}, all for one reason: {reason} (column '{shown(field)}'). Check that column's name "
            "in the configuration (or the mapping in the Airbyte UI) against the stream's records."
        )


class StreamRoutes:
    """A stream's deliveries, and the tally of its records since its last STATE."""

    __slots__ = ("deliveries", "tally")

    def __init__(self, tally: Tally) -> None:
        self.deliveries: list[Delivery] = []
        self.tally = tally


class Sync:
    """Loads the catalog's streams into Heap through their routes and yields the STATE lines Heap has made safe."""

    def __init__(
        self, config: HeapConfig, routes: list[Route], store: NoStore | S3Store, snapshot: Snapshot | None = None
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        self.store = NoStore() if config.dry_run else store
        keep = self.store.where is not None
        self.stats = SyncStats(dry_run=config.dry_run)
        self.dry_run = config.dry_run
        self.numbers = numbers = BatchNumbers()
        stop = threading.Event()
        app = AppPacing(config.max_events_per_minute, config.on_rejected_record == "fail")
        self.lanes: dict[str, Lane | DeletionLane] = {}
        routes_of = Counter(route.key for route in routes)
        self.checkpoints = CheckpointTracker(key for key, count in routes_of.items() if count > 1)
        self.routes: dict[StreamKey, StreamRoutes] = {}
        for route in routes:
            lane = self.lanes.get(route.api.endpoint)
            if lane is None:
                lane = self.lanes[route.api.endpoint] = lane_for(
                    config, route.api, numbers, stop, app, self.stats, snapshot
                )
            mapper = mapper_for(route.api, route.idempotency_key(), route.key, keep)
            first = route.key not in self.routes
            if first:
                self.routes[route.key] = StreamRoutes(self.checkpoints.tally(route.key))
            stats = self.stats.mapping(route.key, lane.key, lane.api_type, lane.accepted, lane.waiting)
            compared = snapshot is not None and route.api.snapshot_key
            changes = changes_for(snapshot, config, route) if compared else None  # type: ignore[arg-type]
            delivery = Delivery(mapper, lane, route.label, route.api.api_type, stats, changes)
            self.routes[route.key].deliveries.append(delivery)
            logger.info("Loading stream '%s' into %s", shown(route.label), lane.url)
            if first and route.stream.destination_sync_mode == DestinationSyncMode.overwrite:
                logger.info(
                    "Heap is append-only: stream '%s' in overwrite mode loads like append, and nothing already "
                    "in Heap is removed.",
                    shown(route.label),
                )
        if app.shared is not None:
            paces = [("the app id's", app.shared)]
        else:
            paces = [(f"{lane.api_type}'s", lane.pacer.app) for lane in self.lanes.values()]
        self.progress = ProgressLog(self.stats, config.progress_interval_seconds, paces)
        self.rejections = RejectionLog()
        self.states_withheld = 0
        self.states_for_store: list[bytes] = []
        self.bytes_for_store = 0
        """STATEs ready but for the rejected rows they cover, held within the same bound as the others."""
        self.fail_on_rejection = config.on_rejected_record == "fail"
        if self.dry_run:
            logger.info("Dry run: nothing is sent to Heap and no STATE is passed on.")

    def run(self, messages: Iterable[Any]) -> Iterator[AirbyteMessage | bytes]:
        """Sends every record, yielding each STATE (as its raw line) once the records before it are settled.

        `messages` are records, STATEs, unreadable lines and ticks, at which batches open for a while
        are sent and settled STATEs passed, however quiet the input. A malformed STATE ends the
        reading: what came before it is still delivered and checkpointed.
        """
        self.progress.start()
        malformed = None
        try:
            try:
                for message in messages:
                    kind = type(message)
                    if kind is tuple:
                        out = self._record(message)
                    elif kind is State:
                        out = self._state(message)
                    elif kind is Tick:
                        yield from self._pass(self._tick(message.idle))
                        continue
                    elif kind is StreamEnded:
                        self.progress.stream_ended(message.stream, message.status)
                        continue
                    else:
                        out = self._unreadable(message)
                    if out:
                        yield from self._pass(out)
            except MalformedState as error:
                malformed = error
            for routed in self.routes.values():
                for delivery in routed.deliveries:
                    if not delivery.mapped and delivery.refusals >= ALL_REFUSED_AT_END:
                        raise delivery.all_refused()
            for lane in self.lanes.values():
                yield from self._pass(self._settle(lane.submit(lane.builder.seal()), lane))
            for lane in sorted(self.lanes.values(), key=lambda lane: lane.drains_last):
                yield from self._pass(self._settle(lane.pipeline.drain(), lane))
            self.store.flush()
            yield from self._pass([], final=True)
        except Stopped:
            raise self._failure() from None
        finally:
            self.progress.stop()
            for lane in self.lanes.values():
                lane.pipeline.close()
        if malformed is not None:
            raise malformed
        self.rejections.log_unlogged()
        if self.dry_run:
            self.progress.log("Dry run finished", final=True)
            logger.info("Dry run: %d STATE messages withheld.", self.states_withheld)
        else:
            self.progress.log("Sync finished", final=True)
            if self.store.where is not None:
                logger.info("%d rejected records kept in %s", self.store.stored, self.store.where)
        yield self._summary_message()

    def _pass(self, states: list[bytes], final: bool = False) -> list[bytes]:
        """The STATE lines to pass on (none in a dry run), once the rejected records they may cover are stored.

        While rejected records wait for the store, STATEs wait with them, in order, until the store is
        due to write (or the input ends), so the store is written in few large files.
        """
        if self.dry_run:
            self.states_withheld += len(states)
            return []
        waiting = self.states_for_store
        if not waiting and not (states and self.store.pending):
            return states
        waiting += states
        self.bytes_for_store += sum(map(len, states))
        full = self.bytes_for_store > HELD_STATE_BYTES or len(waiting) > HELD_STATES
        if not (final or full or self.store.due()):
            return []
        self.store.flush()
        self.states_for_store = []
        self.bytes_for_store = 0
        return waiting

    def _record(self, record: Record) -> list[bytes] | None:
        stream, data, emitted_at, line = record
        stats = self.stats
        stats.records_read += 1
        position = stats.records_read
        routed = self.routes.get(stream)
        if routed is None:
            self.checkpoints.tally(stream).count += 1
            unmappable = Unmappable(OTHER_STREAM, position)
            return self._unmappable(stream, unmappable, (data, emitted_at))
        routed.tally.count += 1
        ready = None
        unchanged = 0
        for delivery in routed.deliveries:
            lane = delivery.lane
            # Mapping and encoding are pure: whatever one record makes them raise is that record's reason. The
            # snapshot, the store and the checks below run outside, so their errors stop the sync as they should.
            changes, change = delivery.changes, None
            try:
                mapped = delivery.mapper.map(data, emitted_at, position, line)
                change = changes.of(mapped) if changes is not None and type(mapped) is HeapItem else None
            except Exception as error:
                mapped = Unmappable(failure_reason(error), position)
            if change is not None and changes.unchanged(mapped, change):  # type: ignore[union-attr, arg-type]
                delivery.mapped = True
                delivery.stats.unchanged += 1
                unchanged += 1
                continue
            try:
                full = None if type(mapped) is Unmappable else lane.builder.add(mapped)
            except ItemTooLarge:
                reason = f"item larger than max_request_bytes ({self.config.max_request_bytes})"
                mapped = Unmappable(reason, position)
            except Exception as error:
                mapped = Unmappable(failure_reason(error), position)
            if type(mapped) is Unmappable:
                delivery.refused(mapped)
                self._unmappable(stream, mapped, line if line is not None else (data, emitted_at), delivery.stats)
                continue
            delivery.mapped = True
            delivery.stats.sent += 1
            number = lane.builder.batch.number
            if number != delivery.noted:
                delivery.noted = number
                self.checkpoints.note(stream, number)
            if mapped.notes:
                adjusted = stats.adjusted
                for note in mapped.notes:  # Counter.update costs more than the loop for a note or two
                    adjusted[note] += 1
            if full is not None:
                ready = (ready or []) + self._settle(lane.submit(full), lane)
        if unchanged == len(routed.deliveries):
            stats.records_unchanged += 1
        return ready

    def _unreadable(self, line: Unreadable) -> None:
        """A line with no usable record: a record of a stream when it names one, else a line counted apart."""
        if line.stream is not None:
            self.stats.records_read += 1
            self.checkpoints.tally(line.stream).count += 1
            unmappable = Unmappable(line.reason, line.line)
            return self._unmappable(line.stream, unmappable, line.raw, what="Input line", at=self.stats.records_read)
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

    def _state(self, state: State) -> list[bytes]:
        """Holds a STATE until the batches holding its records are settled; while too many STATEs wait, reads
        nothing more until some pass."""
        for lane in self.lanes.values():
            lane.builder.barrier()
        ready = self.checkpoints.add(state, self.numbers.last, self.stats.records_read) + self._tick()
        checkpoints = self.checkpoints
        while checkpoints.held_bytes > HELD_STATE_BYTES or checkpoints.held_count > HELD_STATES:
            for lane in self.lanes.values():
                ready += self._settle(lane.submit(lane.builder.seal()), lane)
            if not any(lane.pipeline.in_flight for lane in self.lanes.values()):
                break
            for lane in self.lanes.values():
                ready += self._settle(lane.pipeline.wait_any(TICK_SECONDS), lane)
        over = checkpoints.held_bytes > HELD_STATE_BYTES or checkpoints.held_count > HELD_STATES
        if over and any(lane.pipeline.holding for lane in self.lanes.values()):
            raise config_error(
                f"More than {HELD_STATES:,} STATE messages (or {HELD_STATE_BYTES // 2**20} MiB of them) wait for this "
                "sync's user deletions, which are sent only when the input ends: nothing was deleted. Sync the "
                "deletions in a connection of their own, or have the source emit fewer STATE messages."
            )
        return ready

    def _tick(self, idle: bool = False) -> list[bytes]:
        """Sends batches open for a while (any open batch once the input is idle: nothing more may come
        soon), and passes the STATEs that sends settled meanwhile."""
        ready: list[bytes] = []
        for lane in self.lanes.values():
            if lane.builder.older_than(0.0 if idle else FLUSH_AFTER_SECONDS):
                ready += self._settle(lane.submit(lane.builder.seal()), lane)
            ready += self._settle(lane.pipeline.poll(), lane)
        return ready

    def _failure(self) -> BaseException:
        """What stopped the senders: the first error of any lane that is not Stopped."""
        for lane in self.lanes.values():
            error = lane.pipeline.failure()
            if error is not None:
                return error
        return Stopped()

    def _settle(self, results: list[BatchResult], lane: Lane) -> list[bytes]:
        """Counts a lane's settled batches, keeps and logs the records Heap refused, and returns the STATE lines
        the batches let pass."""
        ready: list[bytes] = []
        if results and self.snapshot is not None:
            self.snapshot.accepted(lane.accepted.take_changes())
            self.snapshot.commit()
        for result in results:
            self.stats.add(result, lane.key)
            for rejection in result.rejections:
                stream = rejection.stream
                if stream is not None and self.checkpoints.reject(stream, rejection.position):
                    self.stats.records_rejected += 1
                    self._keep(stream, rejection.position, rejection.reason, None, rejection.source)
                mapping = self.stats.mappings.get((stream, lane.key)) if stream is not None else None  # type: ignore[arg-type]
                name = mapping.name if mapping is not None else f"a stream to {lane.api_type}"
                line = "Record %d of %s was rejected by Heap: %s"
                self.rejections.warn(name, rejection.kind, line, rejection.position, name, rejection.reason)
            ready += self.checkpoints.settle(result.number)
        return ready

    def _unmappable(
        self,
        stream: StreamKey,
        unmappable: Unmappable,
        source: bytes | tuple[Any, float] | None,
        mapping: MappingStats | None = None,
        what: str = "Record",
        at: int | None = None,
    ) -> None:
        """Counts, keeps and logs a record that cannot be sent (by `mapping`, or by none: its stream or line
        has none); `at` is its place among records when `what` numbers lines."""
        name = mapping.name if mapping is not None else stream_words(stream)
        column = f" (column '{shown(unmappable.field)}')" if unmappable.field else ""
        if self.fail_on_rejection:
            raise config_error(
                f"{what} {unmappable.position} of {name} cannot be sent (on_rejected_record is 'fail'): "
                f"{unmappable.reason}{column}"
            )
        if self.checkpoints.reject(stream, at or unmappable.position):
            self.stats.records_unmappable += 1
            self._keep(stream, at or unmappable.position, unmappable.reason, unmappable.field, source)
        if mapping is not None:
            tally(mapping.unsendable, unmappable.reason)
        tally(self.stats.unmappable, unmappable.reason)
        line = "%s %d of %s cannot be sent to Heap: %s%s"
        self.rejections.warn(name, unmappable.reason, line, what, unmappable.position, name, unmappable.reason, column)

    def _keep(
        self,
        stream: StreamKey,
        position: int,
        reason: str,
        field: str | None,
        source: bytes | tuple[Any, float] | None,
    ) -> None:
        """Hands a rejected record to the store, if there is one; a record held as its line is read again (and
        kept as that line, when it holds no record object the parser reads)."""
        if self.store.where is None:
            return
        line = None
        if type(source) is bytes:
            line = source
            try:
                source = record_of(line)
            except (RecursionError, ValueError, KeyError, TypeError):
                source = None
        data, emitted_at = source if source is not None else (None, None)
        if not (type(emitted_at) is int or (type(emitted_at) is float and math.isfinite(emitted_at))):
            emitted_at = None
        self.store.add(RejectedRecord(stream, position, reason, field, data, emitted_at, line))

    def _summary_message(self) -> AirbyteMessage:
        self.stats.store = self.store.where
        self.stats.stored = self.store.stored
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
