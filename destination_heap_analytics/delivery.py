"""Delivers batches to Heap: pacing, retries, isolating rejected items, several requests in flight."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .batching import Batch, RequestBody, decoded
from .client import Answer, HeapClient, Verdict, abort_all, origin_of
from .config import config_error
from .messages import StreamKey, stream_words
from .pacing import Pacer

logger = logging.getLogger("airbyte")

SPLIT_MEMORY = 0.999
"""How much each newly resolved item fades the refusal rate's past: about the last thousand items count."""


class Stopped(Exception):
    """The sync is ending for another reason; this batch's work was abandoned."""


@dataclass(frozen=True)
class Rejection:
    """A record Heap refused: its stream, its place in the input, Heap's reason and that reason's class."""

    stream: StreamKey | None
    position: int
    reason: str
    kind: str
    source: bytes | tuple[Any, float] | None = None


@dataclass
class BatchResult:
    """What became of one batch once every item is accepted or rejected."""

    number: int
    rejections: list[Rejection] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    throttled: int = 0


class SplitPolicy:
    """Chooses the size of the parts a batch is sent in, from how many recent items Heap refused.

    Every item is sent alone before it is counted as rejected; the policy only picks part sizes.
    While refusals are rare a refused part is halved, which finds a few bad items in a few requests;
    as they grow common parts shrink toward one item, so a batch whose items are all refused costs
    about one request an item instead of the two that halving costs. Approximate under threads.
    """

    def __init__(self) -> None:
        self.refused = 0.0
        self.resolved = 0.0

    def observe(self, items: int, refused: int) -> None:
        """Counts items whose fate is known, and how many of them Heap refused."""
        fade = SPLIT_MEMORY**items
        self.refused = self.refused * fade + refused
        self.resolved = self.resolved * fade + items

    def part_size(self, size: int) -> int:
        """The part size for `size` items: all of them while nothing was refused lately."""
        if self.refused <= 0:
            return size
        return max(1, min(size, round(self.resolved / self.refused)))


@dataclass(frozen=True)
class RetryPolicy:
    """How a request is retried: for `budget_seconds` of wall time from its first throttled or failed
    answer, pacing waits included, each time after the longer of Heap's Retry-After and a jittered
    exponential backoff (a Retry-After of 0, or in the past, is no reason to hammer Heap).

    Immutable, like urllib3's Retry: `increment` returns the policy for the next attempt.
    """

    budget_seconds: float
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    attempts: int = 0
    deadline: float = math.inf

    def increment(self, now: float) -> RetryPolicy:
        """The policy after one more retryable answer, at `now`; the budget runs from the first."""
        deadline = now + self.budget_seconds if self.attempts == 0 else self.deadline
        return replace(self, attempts=self.attempts + 1, deadline=deadline)

    def delay(self, retry_after: float | None, jitter: float) -> float:
        """Seconds before the next attempt: the longer of Retry-After, when Heap gave one, and full-jitter backoff."""
        backoff = jitter * min(self.backoff_cap, self.backoff_base * 2**self.attempts)
        return max(retry_after or 0.0, backoff)


class FailFast:
    """With on_rejected_record 'fail', shared by every sender: the first to see a refusal isolates the
    refused record alone, to name it; the others stop sending, since the sync will fail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None

    def claim(self) -> bool:
        """Makes this thread the one isolating a refusal; False when another thread already is."""
        with self.lock:
            if self.owner is None:
                self.owner = threading.get_ident()
            return self.owner == threading.get_ident()

    def stops_others(self) -> bool:
        """Whether another thread is isolating a refusal, so this one must send nothing more."""
        owner = self.owner
        return owner is not None and owner != threading.get_ident()


REFUSED_BEFORE_ANY_ACCEPTED = 100
"""Requests to one API that Heap may refuse before it has accepted any, before the sync stops: past this many,
Heap is refusing the requests themselves (an app id it does not know, a form it does not take), not a few
records, and isolating every record would only cost a request each."""


class RefusalGuard:
    """Shared by an API's senders: stops the sync once Heap has refused REFUSED_BEFORE_ANY_ACCEPTED requests and
    accepted none. Once Heap accepts one, refusals are records' own, isolated one by one as ever."""

    def __init__(self, url: str, limit: int = REFUSED_BEFORE_ANY_ACCEPTED) -> None:
        self.url = url
        self.limit = limit
        self.lock = threading.Lock()
        self.accepted = False
        self.refused = 0

    def accept(self) -> None:
        """Heap accepted a request."""
        self.accepted = True

    def refuse(self, answer: Answer) -> None:
        """Heap refused a request; a config error once it refused the limit and accepted none."""
        if self.accepted:
            return
        with self.lock:
            self.refused += 1
            if self.refused < self.limit or self.accepted:
                return
        raise config_error(
            f"Heap refused the first {self.refused} requests to {self.url} and accepted none (the last answer: "
            f"{answer.describe()}), so the sync stopped instead of trying each record alone. Check app_id (the "
            "environment id under Account > Manage > Projects), region and base_url; if they are right, try "
            "write --dry-run to see what would be sent."
        )


class Accepted:
    """Records Heap accepted so far, by stream, counted as each part is accepted (on the senders' threads), so
    progress follows Heap while a batch is still being sent."""

    def __init__(self, changes: bool = False) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[StreamKey | None] = Counter()
        self.changes: list[tuple[tuple[int, bytes, bytes], int]] | None = [] if changes else None
        """With change detection, each accepted item's change and record position, until the sync records them."""

    def add(self, part: Batch) -> None:
        """Counts the records of an accepted part (and keeps its items' changes)."""
        with self.lock:
            part.count_streams(self.counts)
            changes = self.changes
            if changes is not None:
                for item in part.items:
                    for update in item.merged or (item,):
                        if update.change is not None:
                            changes.append((update.change, update.position))

    def take_changes(self) -> list[tuple[tuple[int, bytes, bytes], int]]:
        """The changes kept since the last call."""
        with self.lock:
            changes, self.changes = self.changes or [], [] if self.changes is not None else None
        return changes

    def of(self, stream: StreamKey) -> int:
        """Records of `stream` accepted so far."""
        return self.counts.get(stream, 0)


class BatchSender:
    """Sends one batch until Heap has accepted or rejected each of its items."""

    def __init__(
        self,
        client: HeapClient,
        pacer: Pacer,
        body: RequestBody,
        app_id: str,
        retry: RetryPolicy,
        stop: threading.Event,
        fail_fast: FailFast | None = None,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        guard: RefusalGuard | None = None,
        accepted: Accepted | None = None,
    ) -> None:
        self.accepted = accepted or Accepted()
        self.guard = guard or RefusalGuard(client.url)
        self.client = client
        self.pacer = pacer
        self.body = body
        self.app_id = app_id
        self.retry = retry
        self.stop = stop
        self.fail_fast = fail_fast
        self.jitter = jitter
        self.clock = clock
        self.splits = SplitPolicy()
        self.app_id_accepted = False

    def send(self, batch: Batch) -> BatchResult:
        """Delivers a batch; a refused part is split until the refused items stand alone.

        Any failure stops every other sender and cuts their connections, so the sync ends at once.
        """
        try:
            return self._send(batch)
        except Stopped:
            raise
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stops every sender: waits end, and answers being awaited are cut off."""
        self.stop.set()
        abort_all()

    def _send(self, batch: Batch) -> BatchResult:
        result = BatchResult(batch.number)
        parts = batch.parts(min(self.splits.part_size(len(batch)), self.pacer.app.request_items()))[::-1]
        while parts:
            part = parts.pop()
            answer = self._post(part, result)
            if answer.verdict is Verdict.REJECTED and answer.names_app_id:
                self._check_app_id(result)
            if answer.verdict is Verdict.ACCEPTED:
                self.guard.accept()
                self.accepted.add(part)
                self.splits.observe(len(part.items), 0)
                continue
            self.guard.refuse(answer)
            if self.fail_fast is not None and not self.fail_fast.claim():
                raise Stopped()
            if len(part.items) > 1:
                parts += part.parts(min(self.splits.part_size(len(part)), (len(part) + 1) // 2))[::-1]
                continue
            item = part.items[0]
            if item.merged:
                parts += [Batch(part.number, [update]) for update in item.merged[::-1]]
                continue
            self.splits.observe(1, 1)
            if self.fail_fast is not None:
                of = f" of {stream_words(item.stream)}" if item.stream is not None else ""
                raise config_error(
                    f"Heap rejected record {item.position}{of} (on_rejected_record is 'fail'): {answer.describe()}"
                )
            result.rejections.append(Rejection(item.stream, item.position, answer.describe(), answer.head, item.source))
        return result

    def _check_app_id(self, result: BatchResult) -> None:
        """A refusal that names the app id may be about the request or about one item's text: an empty
        request, which holds no item, tells which."""
        if self.app_id_accepted:
            return
        probe = self._post(Batch(0), result)
        if probe.verdict is Verdict.ACCEPTED:
            self.app_id_accepted = True
        elif probe.refuses_app_id:
            raise bad_app_id(self.app_id, probe)

    def _post(self, part: Batch, result: BatchResult) -> Answer:
        """Posts one part, retrying throttling and transient faults while the retry policy allows."""
        payload = self.body(part)
        retry = self.retry
        answer = None
        while True:
            if self.fail_fast is not None and self.fail_fast.stops_others():
                raise Stopped()
            sent_at = self.pacer.reserve(part.keys, self.stop, retry.deadline)
            if sent_at is None:
                if self.stop.is_set():
                    raise Stopped()
                raise self._out_of_budget(retry, answer)
            if self.stop.is_set():
                self.pacer.gave_up()
                raise Stopped()
            previous, answer = answer, self.client.post(payload)
            if answer.verdict is Verdict.THROTTLED:
                self.pacer.throttled(sent_at, answer.retry_after)
            elif answer.verdict is Verdict.TRANSIENT or answer.verdict in CONFIG_FAULTS:
                self.pacer.gave_up()
            else:
                self.pacer.passed(len(part.items))
            if self.stop.is_set():
                raise Stopped()
            result.requests += 1
            if answer.verdict is Verdict.THROTTLED:
                result.throttled += 1
            elif answer.verdict in CONFIG_FAULTS:
                if previous is not None and previous.verdict is answer.verdict:
                    raise unreachable(self.client.url, answer)
            elif answer.verdict is not Verdict.TRANSIENT:
                return self._final(answer)
            now = self.clock()
            retry = retry.increment(now)
            delay = retry.delay(answer.retry_after, self.jitter())
            if now + delay > retry.deadline:
                raise self._out_of_budget(retry, answer)
            logger.warning(
                "Retrying a request of %d items to %s in %.1fs (attempt %d): %s",
                len(part.items),
                self.client.url,
                delay,
                retry.attempts,
                answer.describe(),
            )
            result.retries += 1
            if self.stop.wait(delay):
                raise Stopped()

    def _out_of_budget(self, retry: RetryPolicy, answer: Answer | None) -> AirbyteTracedException:
        last = answer.describe() if answer is not None else "none"
        return AirbyteTracedException(
            message=(
                f"Heap did not accept a request to {self.client.url} within the {retry.budget_seconds:g}s retry "
                f"budget ({retry.attempts} attempts); last answer: {last}. The sync can be resumed from its "
                "last state."
            ),
            failure_type=FailureType.transient_error,
        )

    def _final(self, answer: Answer) -> Answer:
        if answer.verdict is Verdict.BAD_APP_ID:
            raise bad_app_id(self.app_id, answer)
        return not_retried(self.client.url, answer)


def not_retried(url: str, answer: Answer) -> Answer:
    """The answer, unless it ends the sync: a redirect (a config error) or a status no retry can mend."""
    if answer.verdict is Verdict.REDIRECTED:
        raise redirected(url, answer)
    if answer.verdict is Verdict.FATAL:
        raise AirbyteTracedException(
            message=f"Heap answered {answer.describe()} to {url}; not retried.",
            failure_type=FailureType.system_error,
        )
    return answer


def bad_app_id(app_id: str, answer: Answer) -> AirbyteTracedException:
    """The config error for an app id Heap refused."""
    return config_error(
        f"Heap rejected app_id '{app_id}': check the environment id under Account > Manage > Projects "
        f"({answer.describe()})"
    )


CONFIG_FAULTS = (Verdict.TLS_FAILED, Verdict.NO_SUCH_HOST)
"""Network faults that, twice in a row, are the config's: retrying them for max_retry_seconds would only hide it."""


def unreachable(url: str, answer: Answer) -> AirbyteTracedException:
    """The config error for a host that does not resolve, or a TLS handshake that failed twice."""
    if answer.verdict is Verdict.NO_SUCH_HOST:
        return config_error(
            f"cannot reach {origin_of(url)}: {answer.detail}. Check region and base_url (leave base_url empty to "
            "use the region's address), and that the Airbyte host can resolve names on the internet."
        )
    return config_error(
        f"The TLS handshake with {origin_of(url)} failed twice ({answer.detail}): the server there may not "
        "speak https on that port, or its certificate is not trusted. Check base_url's scheme (https) and port, "
        "or leave base_url empty to use the region's address."
    )


def redirected(url: str, answer: Answer) -> AirbyteTracedException:
    """The config error for an endpoint that redirects: nothing is sent to where it points."""
    return config_error(
        f"{url} answered {answer.describe()}. Heap's API does not redirect, so no data is sent there: "
        "check region and base_url (leave base_url empty to use the region's address)."
    )


class DryRunSender:
    """Stands in for BatchSender in a dry run: sends nothing, logs the first items as they would go."""

    def __init__(self, url: str, shown: int, accepted: Accepted | None = None) -> None:
        self.url = url
        self.shown = shown
        self.stop = threading.Event()
        self.accepted = accepted or Accepted()

    def send(self, batch: Batch) -> BatchResult:
        """Accepts a batch without sending it, logging items until `shown` have been logged."""
        shown = max(0, self.shown)
        for item, tail in zip(batch.items[:shown], batch.encoded[:shown], strict=True):
            self.shown -= 1
            payload = orjson.dumps(decoded(tail), option=orjson.OPT_INDENT_2).decode()
            logger.info(
                "Dry run: record %d would go to %s in batch %d as\n%s", item.position, self.url, batch.number, payload
            )
        self.accepted.add(batch)
        return BatchResult(batch.number, requests=1)

    def abort(self) -> None:
        """Stops: nothing is ever in flight."""
        self.stop.set()


class Pipeline:
    """Runs batch sends on worker threads: a bounded number in flight, in key order where asked.

    With `ordered` (the property APIs, where the last write wins, and identify, where the first link
    stays), a batch that touches a key still in flight waits for that earlier batch, retries included,
    so calls for one key reach Heap in source order.
    """

    holding = False
    """Batches are sent as they come, never held to the end of the input."""

    def __init__(self, sender: BatchSender | DryRunSender, workers: int, ordered: bool) -> None:
        self.sender = sender
        self.workers = workers
        self.ordered = ordered
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heap-send")
        self.in_flight: dict[Future[BatchResult], Batch] = {}
        self.keys_held: dict[Future[BatchResult], frozenset[str]] = {}
        """With `ordered`, the keys of each batch in flight."""

    def submit(self, batch: Batch) -> list[BatchResult]:
        """Starts sending a batch; returns the results that completed meanwhile."""
        results: list[BatchResult] = []
        if self.ordered:
            keys = batch.order_keys
            results += self._collect([future for future, held in self.keys_held.items() if not keys.isdisjoint(held)])
        while len(self.in_flight) >= self.workers:
            done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
            results += self._collect(done)
        future = self.executor.submit(self.sender.send, batch)
        self.in_flight[future] = batch
        if self.ordered:
            self.keys_held[future] = keys
        return results + self.poll()

    def poll(self) -> list[BatchResult]:
        """The results completed so far, without waiting."""
        return self._collect([future for future in self.in_flight if future.done()])

    def wait_any(self, timeout: float) -> list[BatchResult]:
        """The results completed within `timeout`, waiting for at least one while any is in flight."""
        done, _ = wait(self.in_flight, timeout, return_when=FIRST_COMPLETED)
        return self._collect(done)

    def drain(self) -> list[BatchResult]:
        """Waits for every batch in flight."""
        return self._collect(list(self.in_flight))

    def close(self) -> None:
        """Stops the workers: abandons waits and answers in progress, starts nothing new."""
        self.sender.abort()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _collect(self, futures: Iterable[Future[BatchResult]]) -> list[BatchResult]:
        results = []
        for future in sorted(futures, key=lambda f: self.in_flight[f].number):
            try:
                result = future.result()
            except Stopped:
                raise self.failure() or Stopped() from None
            del self.in_flight[future]
            self.keys_held.pop(future, None)
            results.append(result)
        return results

    def failure(self) -> BaseException | None:
        """The failure that stopped the senders, if it was one of this pipeline's: the first batch's error that
        is not Stopped."""
        wait(self.in_flight)
        for future in sorted(self.in_flight, key=lambda f: self.in_flight[f].number):
            error = future.exception()
            if error is not None and not isinstance(error, Stopped):
                return error
        return None
