"""Delivers batches to Heap: pacing, retries, isolating rejected items, several requests in flight."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .batching import Batch, RequestBody
from .client import EXCERPT, Answer, HeapClient, Verdict
from .config import config_error
from .mapping import HeapItem
from .pacing import RateLimiter

logger = logging.getLogger("airbyte")

BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
REDACTED = "<redacted>"
MIN_REDACTED = 4
TOKEN = re.compile(r'[^\s"\\,:{}\[\]]+')


class Stopped(Exception):
    """The sync is ending for another reason; this batch's work was abandoned."""


@dataclass(frozen=True)
class Rejection:
    """An item Heap refused, by its place in the input and Heap's reason."""

    position: int
    records: int
    reason: str


@dataclass
class BatchResult:
    """What became of one batch once every item is accepted or rejected."""

    number: int
    items: int = 0
    records: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    paced_seconds: float = 0.0


class BatchSender:
    """Sends one batch until Heap has accepted or rejected each of its items."""

    def __init__(
        self,
        client: HeapClient,
        limiter: RateLimiter,
        body: RequestBody,
        app_id: str,
        retry_seconds: float,
        stop: threading.Event,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.body = body
        self.app_id = app_id
        self.retry_seconds = retry_seconds
        self.stop = stop
        self.jitter = jitter
        self.clock = clock

    def send(self, batch: Batch) -> BatchResult:
        """Delivers a batch; a 400 splits it until the refused items stand alone."""
        result = BatchResult(batch.number)
        parts = [batch]
        while parts:
            part = parts.pop()
            answer = self._post(part, result)
            if answer.verdict is Verdict.ACCEPTED:
                result.items += len(part.items)
                result.records += part.records
            elif len(part.items) > 1:
                first, second = part.halves()
                parts += [second, first]
            else:
                item = part.items[0]
                reason = f"Heap answered {described(answer, [item])}"
                result.rejections.append(Rejection(item.position, item.records, reason))
        return result

    def _post(self, part: Batch, result: BatchResult) -> Answer:
        """Posts one part, retrying throttling and transient faults within the retry budget."""
        deadline = self.clock() + self.retry_seconds
        payload = self.body(part)
        attempt = 0
        while True:
            entry, waited = self.limiter.reserve(part.keys, self.stop)
            result.paced_seconds += waited
            if self.stop.is_set():
                raise Stopped()
            answer = self.client.post(payload)
            self.limiter.settle(entry)
            result.requests += 1
            if answer.verdict is Verdict.THROTTLED:
                result.throttled += 1
                self.limiter.throttled(answer.retry_after)
            elif answer.verdict is not Verdict.TRANSIENT:
                self.limiter.answered()
                return self._final(answer, part)
            attempt += 1
            delay = answer.retry_after if answer.retry_after is not None else self._backoff(attempt)
            if self.clock() + delay > deadline:
                raise AirbyteTracedException(
                    message=(
                        f"Heap did not accept a request to {self.client.url} within the "
                        f"{self.retry_seconds:g}s retry budget ({attempt} attempts); last answer: "
                        f"{described(answer, part.items)}. The sync can be resumed from its last state."
                    ),
                    failure_type=FailureType.transient_error,
                )
            logger.warning(
                "Retrying a request of %d items to %s in %.1fs (attempt %d): %s",
                len(part.items),
                self.client.url,
                delay,
                attempt,
                described(answer, part.items),
            )
            result.retries += 1
            if self.stop.wait(delay):
                raise Stopped()

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return self.jitter() * min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)

    def _final(self, answer: Answer, part: Batch) -> Answer:
        if answer.verdict is Verdict.BAD_APP_ID:
            raise config_error(
                f"Heap rejected app_id '{self.app_id}': check the environment id under "
                f"Account > Manage > Projects ({described(answer, part.items)})"
            )
        if answer.verdict is Verdict.FATAL:
            raise AirbyteTracedException(
                message=f"Heap answered {described(answer, part.items)} to {self.client.url}; not retried.",
                failure_type=FailureType.system_error,
            )
        return answer


class DryRunSender:
    """Stands in for BatchSender in a dry run: sends nothing, logs the first items as they would go."""

    def __init__(self, url: str, shown: int) -> None:
        self.url = url
        self.shown = shown
        self.stop = threading.Event()

    def send(self, batch: Batch) -> BatchResult:
        """Accepts a batch without sending it, logging items until `shown` have been logged."""
        for item in batch.items[: max(0, self.shown)]:
            self.shown -= 1
            payload = orjson.dumps(item.body, option=orjson.OPT_INDENT_2).decode()
            logger.info(
                "Dry run: record %d would go to %s in request %d as\n%s", item.position, self.url, batch.number, payload
            )
        return BatchResult(batch.number, len(batch.items), batch.records, requests=1)


def described(answer: Answer, items: Iterable[HeapItem]) -> str:
    """The answer's status and excerpt with every identity and value of the items blanked out."""
    return answer.describe(redact(answer.text, items))


def redact(text: str, items: Iterable[HeapItem], limit: int = EXCERPT) -> str:
    """At most `limit` characters of the text, with every string value of the items blanked out: whole,
    JSON-escaped, or cut short at its end."""
    values: set[str] = set()
    for item in items:
        _strings(item.body, values)
    values = {value for value in values if len(value) >= MIN_REDACTED}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
        escaped = orjson.dumps(value).decode()[1:-1]
        if escaped != value:
            text = text.replace(escaped, REDACTED)
    return TOKEN.sub(lambda token: _prefix_of_any(token.group(), values), text[:limit])


def _prefix_of_any(token: str, values: set[str]) -> str:
    if len(token) < MIN_REDACTED or token == REDACTED:
        return token
    return REDACTED if any(value.startswith(token) for value in values) else token


def _strings(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        into.add(value)
    elif isinstance(value, dict):
        for inner in value.values():
            _strings(inner, into)
    elif isinstance(value, list):
        for inner in value:
            _strings(inner, into)


class Pipeline:
    """Runs batch sends on worker threads: a bounded number in flight, in key order where asked.

    With `ordered` (the property APIs, where the last write wins), a batch that touches a key
    still in flight waits for that earlier batch, so updates to one key reach Heap in order.
    """

    def __init__(self, sender: BatchSender | DryRunSender, workers: int, ordered: bool) -> None:
        self.sender = sender
        self.workers = workers
        self.ordered = ordered
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heap-send")
        self.in_flight: dict[Future[BatchResult], Batch] = {}
        self.key_owner: dict[str, Future[BatchResult]] = {}

    def submit(self, batch: Batch) -> list[BatchResult]:
        """Starts sending a batch; returns the results that completed meanwhile."""
        results: list[BatchResult] = []
        if self.ordered:
            earlier = {self.key_owner[item.key] for item in batch.items if item.key in self.key_owner}
            results += self._collect(earlier)
        while len(self.in_flight) >= self.workers:
            done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
            results += self._collect(done)
        future = self.executor.submit(self.sender.send, batch)
        self.in_flight[future] = batch
        if self.ordered:
            for item in batch.items:
                self.key_owner[item.key] = future
        return results + self.poll()

    def poll(self) -> list[BatchResult]:
        """The results completed so far, without waiting."""
        return self._collect([future for future in self.in_flight if future.done()])

    def drain(self) -> list[BatchResult]:
        """Waits for every batch in flight."""
        return self._collect(list(self.in_flight))

    def close(self) -> None:
        """Stops the workers: abandons retries in progress, starts nothing new."""
        self.sender.stop.set()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _collect(self, futures: Iterable[Future[BatchResult]]) -> list[BatchResult]:
        results = []
        for future in sorted(futures, key=lambda f: self.in_flight[f].number):
            result = future.result()
            batch = self.in_flight.pop(future)
            if self.ordered:
                for item in batch.items:
                    if self.key_owner.get(item.key) is future:
                        del self.key_owner[item.key]
            results.append(result)
        return results
