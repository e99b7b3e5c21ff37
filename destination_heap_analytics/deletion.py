"""User deletion through Heap's privacy API: a sync's deletions are held until its input ends, checked against
the mass-deletion guard, then sent 10,000 users a request with short-lived tokens."""

from __future__ import annotations

import base64
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .batching import Batch, BatchBuilder, BatchNumbers, RequestBody
from .changes import Snapshot
from .client import Answer, HeapClient, Verdict
from .config import HeapConfig, UserDeletionApi, config_error
from .delivery import CONFIG_FAULTS, Accepted, BatchResult, Rejection, RetryPolicy, Stopped, not_retried, unreachable
from .messages import stream_words
from .pacing import AppRate, Pacer, WaitClock

logger = logging.getLogger("airbyte")

TOKEN_PATH = "/api/public/v0/auth_token"
USERS_PER_REQUEST = 10_000
TOKEN_SECONDS = 240.0
"""A token is used this long at most: Heap's last about five minutes, and a 401 takes a new one anyway."""
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""What a deletion request id looks like; an answer holding anything else is not repeated in the log."""


class DeletionClient:
    """Heap's privacy API for one app id and key: tokens (HTTP Basic) and deletion requests (Bearer), each
    retried on throttling and transient faults within the retry budget."""

    def __init__(
        self,
        config: HeapConfig,
        stop: threading.Event,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = config.deletion_api_key.get_secret_value() if config.deletion_api_key else ""
        self.app_id = config.app_id
        self.basic = {"Authorization": "Basic " + base64.b64encode(f"{config.app_id}:{key}".encode()).decode()}
        self.tokens = HeapClient(config.url + TOKEN_PATH, config.request_timeout_seconds)
        self.deletions = HeapClient(config.url + UserDeletionApi.endpoint, config.request_timeout_seconds)
        self.retry = RetryPolicy(config.max_retry_seconds)
        self.stop = stop
        self.jitter = jitter
        self.clock = clock
        self.token: str | None = None
        self.taken_at = 0.0
        self.requests = self.retries = self.throttled = 0

    def take_token(self) -> None:
        """Takes a new token; a config error naming the key when Heap refuses it."""
        answer = self._exchange(self.tokens, b"", self.basic)
        if answer.verdict is not Verdict.ACCEPTED:
            raise config_error(
                f"Heap refused deletion_api_key for app_id '{self.app_id}' ({answer.describe()}): copy the key from "
                "Account > Manage > Privacy & Security, and use the Main Production environment's id as app_id"
            )
        token = _field(answer, "access_token")
        if token is None:
            raise AirbyteTracedException(
                message=f"Heap's answer to {self.tokens.url} holds no access_token; nothing was deleted.",
                failure_type=FailureType.system_error,
            )
        self.token, self.taken_at = token, self.clock()

    def delete(self, body: bytes) -> Answer:
        """Posts one deletion request, with a new token when the last is old or Heap answers 401."""
        if self.token is None or self.clock() - self.taken_at > TOKEN_SECONDS:
            self.take_token()
        answer = self._exchange(self.deletions, body, self._bearer())
        if answer.status == 401:
            logger.info("Heap answered 401 to a deletion request: taking a new token and sending it again.")
            self.take_token()
            answer = self._exchange(self.deletions, body, self._bearer())
        if answer.verdict is Verdict.BAD_APP_ID:
            raise config_error(
                f"Heap refused a deletion request with a token it had just given ({answer.describe()}): check that "
                "deletion_api_key is the Privacy & Security key of the account app_id belongs to"
            )
        return answer

    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _exchange(self, client: HeapClient, body: bytes, headers: dict[str, str]) -> Answer:
        """Posts until Heap answers other than throttled or a transient fault, while the retry policy allows."""
        retry, answer = self.retry, None
        while True:
            if self.stop.is_set():
                raise Stopped()
            previous, answer = answer, not_retried(client.url, client.post(body, headers))
            self.requests += 1
            if answer.verdict in CONFIG_FAULTS and previous is not None and previous.verdict is answer.verdict:
                raise unreachable(client.url, answer)
            if answer.verdict not in (Verdict.THROTTLED, Verdict.TRANSIENT, *CONFIG_FAULTS):
                return answer
            self.throttled += answer.verdict is Verdict.THROTTLED
            now = self.clock()
            retry = retry.increment(now)
            delay = retry.delay(answer.retry_after, self.jitter())
            if now + delay > retry.deadline:
                raise AirbyteTracedException(
                    message=(
                        f"Heap did not answer {client.url} within the {retry.budget_seconds:g}s retry budget "
                        f"({retry.attempts} attempts); last answer: {answer.describe()}. Nothing more was deleted; "
                        "the sync can be run again (a user deleted twice stays deleted)."
                    ),
                    failure_type=FailureType.transient_error,
                )
            logger.warning("Retrying a request to %s in %.1fs: %s", client.url, delay, answer.describe())
            self.retries += 1
            if self.stop.wait(delay):
                raise Stopped()


def _field(answer: Answer, name: str) -> str | None:
    """A text field of an accepted answer's JSON object, or None."""
    try:
        document = orjson.loads(answer.text)
    except orjson.JSONDecodeError:
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) and value else None


class HeldDeletions:
    """Stands where a lane's pipeline stands: holds every batch of deletions until the input ends, refusing
    the sync as soon as it holds more users than max_deletions_per_sync, then sends them all at `drain`."""

    def __init__(self, sender: DeletionSender, limit: int) -> None:
        self.sender = sender
        self.limit = limit
        self.held: list[Batch] = []
        self.users: dict[bytes, None] = {}
        """The distinct users held, in the order they came (a dict: a set has no order)."""

    @property
    def in_flight(self) -> dict[Any, Batch]:
        """Nothing is in flight before the input ends."""
        return {}

    @property
    def holding(self) -> bool:
        """Whether batches wait for the end of the input."""
        return bool(self.held)

    def submit(self, batch: Batch) -> list[BatchResult]:
        """Holds a batch; a config error, before anything is deleted, once the sync holds too many users."""
        self.held.append(batch)
        for user, item in zip(batch.encoded, batch.items, strict=True):
            self.users[user] = None
            if len(self.users) > self.limit:
                raise config_error(
                    f"This sync asks to delete more than max_deletions_per_sync ({self.limit:,}) users (user "
                    f"{self.limit + 1:,} came with record {item.position:,} of {stream_words(item.stream)}), and "
                    "nothing of this sync was deleted. If that many deletions are meant, raise "
                    "max_deletions_per_sync; otherwise check the stream that feeds user_deletion."
                )
        return []

    def poll(self) -> list[BatchResult]:
        """Nothing settles before the input ends."""
        return []

    def wait_any(self, timeout: float) -> list[BatchResult]:
        """Nothing settles before the input ends."""
        return []

    def drain(self) -> list[BatchResult]:
        """Sends every held deletion; the results of the held batches."""
        held, users, self.held, self.users = self.held, list(self.users), [], {}
        return self.sender.send(held, users) if held else []

    def close(self) -> None:
        """Stops a send in progress."""
        self.sender.stop.set()

    def failure(self) -> BaseException | None:
        """A failure is raised where it happens, on the sync's thread."""
        return None


class DeletionSender:
    """Sends a sync's held deletions: each user once, in requests of at most 10,000 users and max_request_bytes;
    a refused request is split until the refused users stand alone."""

    def __init__(
        self,
        config: HeapConfig,
        client: DeletionClient | None,
        accepted: Accepted,
        snapshot: Snapshot | None,
        log: list[dict[str, Any]],
        stop: threading.Event,
    ) -> None:
        self.client = client
        self.url = config.url + UserDeletionApi.endpoint
        self.max_bytes = config.max_request_bytes
        self.accepted = accepted
        self.snapshot = snapshot
        self.log = log
        self.stop = stop
        self.fail_fast = config.on_rejected_record == "fail"
        self.shown = config.dry_run_payloads

    def send(self, batches: list[Batch], users: list[bytes]) -> list[BatchResult]:
        """Deletes `users`, the distinct users of `batches` (a dry run only says what it would send); the batches'
        results."""
        requests = self._requests(users)
        refused: dict[bytes, Answer] = {}
        if self.client is None:
            self._show(requests)
        else:
            self.client.take_token()  # a wrong key fails here, before any deletion
            for request in requests:
                self._delete(request, refused)
        results = []
        for batch in batches:
            result, kept = BatchResult(batch.number), Batch(batch.number)
            for item, user in zip(batch.items, batch.encoded, strict=True):
                answer = refused.get(user)
                if answer is None:
                    kept.items.append(item)
                    kept.encoded.append(user)
                else:
                    result.rejections.append(
                        Rejection(item.stream, item.position, answer.describe(), answer.head, item.source)
                    )
            self.accepted.add(kept)
            results.append(result)
        client = self.client
        if client is None:
            results[0].requests = len(requests)
        else:
            results[0].requests, results[0].retries, results[0].throttled = (
                client.requests,
                client.retries,
                client.throttled,
            )
        if self.snapshot is not None and client is not None:
            deleted = [orjson.loads(b"{" + user) for user in users if user not in refused]
            self.snapshot.forget_identities(user["identity"] for user in deleted if "identity" in user)
        return results

    def _requests(self, users: list[bytes]) -> list[list[bytes]]:
        """The users in requests of at most USERS_PER_REQUEST users and max_request_bytes each, in order."""
        requests: list[list[bytes]] = []
        size = 0
        for user in users:
            if not requests or len(requests[-1]) >= USERS_PER_REQUEST or size + len(user) + 2 > self.max_bytes:
                requests.append([])
                size = len(b'{"users":[]}')
            requests[-1].append(user)
            size += len(user) + 2
        return requests

    def _delete(self, users: list[bytes], refused: dict[bytes, Answer]) -> None:
        """Sends one request; a refused one in halves, until each refused user stands alone."""
        answer = self.client.delete(_body(users))  # type: ignore[union-attr]
        if answer.verdict is Verdict.ACCEPTED:
            found = _field(answer, "deletion_request_id")
            request_id = found if found is not None and REQUEST_ID.fullmatch(found) else None
            self.log.append({"deletion_request_id": request_id, "users": len(users)})
            logger.info(
                "Heap accepted deletion request %s for %d users (%s).",
                request_id or "(its id is not in the expected form, so not shown)",
                len(users),
                _field(answer, "status") or "no status given",
            )
            return
        if len(users) > 1:
            half = (len(users) + 1) // 2
            self._delete(users[:half], refused)
            self._delete(users[half:], refused)
            return
        if self.fail_fast:
            raise config_error(f"Heap refused a user deletion (on_rejected_record is 'fail'): {answer.describe()}")
        refused[users[0]] = answer

    def _show(self, requests: list[list[bytes]]) -> None:
        """What a dry run would send: how many users in how many requests, and the first users."""
        users = [user for request in requests for user in request]
        logger.info(
            "Dry run: %d users would be deleted in %d requests to %s (nothing is deleted).",
            len(users),
            len(requests),
            self.url,
        )
        for user in users[: max(0, self.shown)]:
            logger.info("Dry run: would delete %s", orjson.dumps(orjson.loads(b"{" + user)).decode())


def _body(users: list[bytes]) -> bytes:
    return b'{"users":[{' + b",{".join(users) + b"]}"


class DeletionLane:
    """The user deletion API's lane: batches held by HeldDeletions until the input ends, then sent after every
    other lane's (so no update sent in the same sync brings a deleted user back)."""

    drains_last = True
    waiting = "held until the input ends"

    def __init__(
        self,
        config: HeapConfig,
        api: UserDeletionApi,
        numbers: BatchNumbers,
        stop: threading.Event,
        waits: WaitClock,
        snapshot: Snapshot | None,
        log: list[dict[str, Any]],
    ) -> None:
        self.key = api.endpoint
        self.api_type = api.api_type
        self.url = config.endpoint_url(api)
        self.pacer = Pacer(AppRate(None), api.identity_limit, threading.Lock(), waits=waits)
        self.snapshot = snapshot
        self.accepted = Accepted()
        body = RequestBody(config.app_id, api.items_field)
        self.builder = BatchBuilder(body, config.max_request_bytes, False, numbers)
        client = None if config.dry_run else DeletionClient(config, stop)
        sender = DeletionSender(config, client, self.accepted, snapshot, log, stop)
        self.pipeline = HeldDeletions(sender, config.max_deletions_per_sync)

    def submit(self, batch: Batch | None) -> list[BatchResult]:
        """Holds a batch, if any, until the input ends."""
        return [] if batch is None else self.pipeline.submit(batch)
