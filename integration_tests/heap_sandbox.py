"""A local stand-in for Heap's server-side API: enforces its documented rules, records what it
accepts, and injects faults on request.

Run it: `python integration_tests/heap_sandbox.py --configs /tmp/heap-configs`: it prints its URL (a
free port, or `--port N`) and writes the sample configs there pointing at it (the bundled ones hold
`http://127.0.0.1:PORT`, which no run takes). `GET /_sandbox/received` shows what it accepted;
`POST /_sandbox/faults` with a JSON object changes the fault knobs (see `Faults`).
In tests: `with HeapSandbox(Faults(fail_rate=0.1)) as sandbox: ... sandbox.items("track")`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import math
import random
import re
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
except ImportError:  # the sandbox also runs with the standard library alone

    def _loads(data: bytes) -> Any:
        return json.loads(data)

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


TOKEN_PATH = "/api/public/v0/auth_token"
DELETION_PATH = "/api/public/v0/user_deletion"
STATUS_PATH = "/api/public/v0/deletion_status/"
MAX_DELETIONS = 10_000
ENDPOINTS = {
    "/api/track": "events",
    "/api/add_user_properties": "users",
    "/api/add_account_properties": "accounts",
    "/api/v1/identify": "identify",
}
IDENTIFY_FIELDS = {"user_id", "identity", "timestamp"}
USER_IDS_PER_IDENTITY = 10
MAX_BULK = 1000
MAX_TEXT = 1024
MAX_IDENTITY = 255


@dataclasses.dataclass
class Faults:
    """What the sandbox does besides answering correctly. Rates are chances per request."""

    fail_rate: float = 0.0
    fail_status: int = 500
    fail_path: str = ""
    throttle_rate: float = 0.0
    throttle_first: int = 0
    retry_after: float | None = 1.0
    drop_rate: float = 0.0
    latency: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 5.0
    stall_first: int = 0
    rate_limit: int = 0
    rate_window: float = 60.0
    rate_fixed: bool = False
    identity_limit: int = 0
    identity_window: float = 60.0
    poison: str = ""
    max_body_bytes: int = 0
    keep_items: bool = True
    validate: bool = True
    echo_body: bool = False
    redirect_status: int = 0
    redirect_to: str = ""
    trickle_rate: float = 0.0
    trickle_interval: float = 0.5
    empty_bulk: str = "accept"
    error_words: str = "heap"
    ok_body: str = "{}"
    property_arrays: str = "accept"
    strict_times: bool = False
    refuse_all: bool = False
    deletion_key: str = "sandbox-deletion-key"
    token_seconds: float = 300.0
    token_uses: int = 0
    refuse_deletion: str = ""
    seed: int = 1


FAULT_HELP = {
    "fail_rate": "share of requests answered with fail_status",
    "fail_status": "the status of a failed answer (default 500)",
    "fail_path": "an API path (/api/track, ...) whose every request fails with fail_status",
    "throttle_rate": "share of requests answered 429",
    "throttle_first": "how many first requests are answered 429",
    "retry_after": "the Retry-After seconds sent with a 429",
    "drop_rate": "share of requests accepted but whose connection is cut before the answer",
    "latency": "seconds every request but the privacy API's waits before its answer",
    "stall_rate": "share of requests that wait stall_seconds before the answer",
    "stall_seconds": "how long a stalled request waits",
    "stall_first": "how many first requests stall",
    "rate_limit": "items allowed per rate_window for the app (0: no limit)",
    "rate_window": "the app limit's window in seconds",
    "rate_fixed": "count the app limit in fixed windows instead of a sliding one",
    "identity_limit": "events (track) or requests (property APIs) allowed per identity per identity_window",
    "identity_window": "the identity limit's window in seconds",
    "poison": "refuse (400) any item with a property value holding this text",
    "max_body_bytes": "answer 413 to a body larger than this (0: no cap)",
    "keep_items": "keep accepted items to show them (off for long benchmarks)",
    "validate": "check items against Heap's documented rules",
    "echo_body": "quote the request in error answers, as some servers do",
    "redirect_status": "answer every request with this 3xx status",
    "redirect_to": "where a redirect points",
    "trickle_rate": "share of answers sent one byte per trickle_interval",
    "trickle_interval": "seconds between the bytes of a trickled answer",
    "empty_bulk": "what a bulk body with an empty array gets: accept, or refuse (400, after the app id is checked)",
    "error_words": "the words of error answers: heap (JSON, naming the field), or other (plain text, other words)",
    "ok_body": "the body of an accepted request: {} (JSON), '' (empty text), OK (text), or 204 (no content)",
    "property_arrays": "whether the property APIs take array values: accept, or refuse",
    "strict_times": "refuse any timestamp that is not RFC 3339 with an explicit offset",
    "refuse_all": "answer every API request 400 with a body that names nothing",
    "deletion_key": "the Privacy & Security key auth_token takes (with a known app id, by HTTP Basic)",
    "token_seconds": "how long a token lasts before user_deletion answers it 401",
    "token_uses": "how many deletion requests a token serves before it is answered 401 (0: no limit)",
    "refuse_deletion": "refuse (400) a deletion request holding a user with this identity or user_id",
    "seed": "the random seed of every share above",
}


class BadRequest(Exception):
    """A request Heap would answer with 400."""


class SandboxState:
    """What the sandbox has accepted and seen, behind one lock."""

    def __init__(self, faults: Faults, app_ids: set[str] | None) -> None:
        self.lock = threading.Lock()
        self.app_ids = app_ids
        self.configure(faults)

    def configure(self, faults: Faults) -> None:
        """Replaces the faults and forgets everything received."""
        with self.lock:
            self.faults = faults
            self.random = random.Random(faults.seed)
            self.accepted: dict[str, list[dict[str, Any]]] = {field: [] for field in ENDPOINTS.values()}
            self.accepted_count = 0
            self.idempotency_keys: set[str] = set()
            self.linked: dict[str, str] = {}
            self.user_ids_of: dict[str, set[str]] = {}
            self.links_dropped = 0
            self.duplicates = 0
            self.requests = 0
            self.statuses: dict[int, int] = {}
            self.started = time.monotonic()
            self.app_window = Window(faults.rate_limit, faults.rate_window, faults.rate_fixed, self.started)
            self.identity_windows: dict[str, Window] = {}
            self.accepted_requests: list[tuple[float, int]] = []
            self.tokens: dict[str, list[float]] = {}
            """Each token given: when, and how many deletion requests it served."""
            self.deletion_requests: list[dict[str, Any]] = []
            self.deleted: list[dict[str, str]] = []

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Everything received, as plain data."""
        with self.lock:
            return {
                "accepted": {field: list(items) for field, items in self.accepted.items()},
                "accepted_count": self.accepted_count,
                "duplicates_ignored": self.duplicates,
                "links_dropped": self.links_dropped,
                "requests": self.requests,
                "statuses": dict(self.statuses),
                "accepted_requests": list(self.accepted_requests),
                "tokens_given": len(self.tokens),
                "deletion_requests": [dict(request) for request in self.deletion_requests],
                "deleted": list(self.deleted),
            }


class HeapSandbox:
    """Runs the sandbox on 127.0.0.1 in a background thread."""

    def __init__(self, faults: Faults | None = None, port: int = 0, app_ids: set[str] | None = None) -> None:
        self.state = SandboxState(faults or Faults(), app_ids)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.state))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL to put in a config's base_url."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def items(self, field: str) -> list[dict[str, Any]]:
        """The items accepted so far for one API: events, users or accounts."""
        with self.state.lock:
            return list(self.state.accepted[field])

    def configure(self, faults: Faults) -> None:
        """Replaces the faults and forgets everything received."""
        self.state.configure(faults)

    def __enter__(self) -> HeapSandbox:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(state: SandboxState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if self.path == "/_sandbox/received":
                self._answer(200, _dumps(state.snapshot()))
            elif self.path.startswith(STATUS_PATH):
                self._status(self.path[len(STATUS_PATH) :])
            else:
                self._answer(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/_sandbox/faults":
                state.configure(Faults(**_loads(body or b"{}")))
                self._answer(200, b"{}")
                return
            if self.path in (TOKEN_PATH, DELETION_PATH):
                self._privacy(body)
                return
            field = ENDPOINTS.get(self.path)
            if field is None:
                self._answer(404, b'{"error": "not found"}')
                return
            self._api(field, body)

        def _api(self, field: str, body: bytes) -> None:
            with state.lock:
                state.requests += 1
                faults = state.faults
                roll = state.random.random
                fail, throttle, drop, stall, trickle = (
                    roll() < faults.fail_rate,
                    roll() < faults.throttle_rate or state.requests <= faults.throttle_first,
                    roll() < faults.drop_rate,
                    roll() < faults.stall_rate or state.requests <= faults.stall_first,
                    faults.trickle_rate > 0 and roll() < faults.trickle_rate,
                )
            if faults.redirect_status:
                self._answer(faults.redirect_status, b"", {"Location": faults.redirect_to + self.path})
                return
            if faults.latency:
                time.sleep(faults.latency)
            if stall:
                time.sleep(faults.stall_seconds)
            if fail or self.path == faults.fail_path:
                self._error(faults.fail_status, "internal error", body)
                return
            if throttle:
                self._throttle(faults.retry_after)
                return
            if faults.max_body_bytes and len(body) > faults.max_body_bytes:
                self._answer(413, b'{"error": "request entity too large"}')
                return
            if faults.refuse_all:
                self._answer(400, b"Bad Request", content_type="text/plain")
                return
            try:
                app_id, items = _parse(field, body)
                if not _known_app(app_id, state.app_ids):
                    if faults.error_words == "other":
                        self._answer(400, b"Unrecognized environment.", content_type="text/plain")
                    else:
                        self._answer(400, _dumps({"error": f"Invalid app_id: {app_id}"}))
                    return
                if not items and field != "identify" and faults.empty_bulk == "refuse":
                    raise BadRequest(f"{field} must not be empty")
                if faults.validate:
                    for item in items:
                        _validate(field, item, faults)
            except BadRequest as error:
                self._error(400, str(error), body)
                return
            with state.lock:
                wait = _rate_wait(state, field, items)
                if wait is None:
                    _accept(state, field, items)
            if wait is not None:
                self._throttle(math.ceil(wait))
                return
            if drop:
                self._drop()
                return
            if trickle:
                self._trickle(faults.trickle_interval)
                return
            if faults.ok_body == "204":
                self._answer(204, b"")
            else:
                self._answer(
                    200, faults.ok_body.encode(), content_type="application/json" if faults.ok_body else "text/plain"
                )

        def _privacy(self, body: bytes) -> None:
            """Heap's user deletion flow: a token for HTTP Basic app id and key, deletions with that token."""
            with state.lock:
                state.requests += 1
                faults = state.faults
                fail = state.random.random() < faults.fail_rate or self.path == faults.fail_path
                throttle = state.random.random() < faults.throttle_rate or state.requests <= faults.throttle_first
            if fail:
                self._error(faults.fail_status, "internal error", body)
            elif throttle:
                self._throttle(faults.retry_after)
            elif self.path == TOKEN_PATH:
                self._token()
            else:
                self._delete(body)

        def _token(self) -> None:
            app_id, _, key = _basic(self.headers.get("Authorization", "")).partition(":")
            if not _known_app(app_id, state.app_ids) or key != state.faults.deletion_key:
                self._answer(401, _dumps({"error": "invalid credentials"}))
                return
            token = f"tok-{random.getrandbits(64):016x}"
            with state.lock:
                state.tokens[token] = [time.monotonic(), 0]
            self._answer(200, _dumps({"access_token": token}))

        def _bearer(self) -> bool:
            """Whether the request carries a token given and still good; counts the use."""
            header = self.headers.get("Authorization", "")
            faults = state.faults
            with state.lock:
                given = state.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
                if given is None or time.monotonic() - given[0] > faults.token_seconds:
                    return False
                if faults.token_uses and given[1] >= faults.token_uses:
                    return False
                given[1] += 1
                return True

        def _delete(self, body: bytes) -> None:
            if not self._bearer():
                self._answer(401, _dumps({"error": "token expired or invalid"}))
                return
            try:
                users = _deletion_users(body, state.faults.refuse_deletion)
            except BadRequest as error:
                self._error(400, str(error), body)
                return
            request_id = f"del-{random.getrandbits(48):012x}"
            with state.lock:
                state.deletion_requests.append({"id": request_id, "users": len(users), "at": time.monotonic()})
                state.deleted.extend(users)
            self._answer(201, _dumps({"deletion_request_id": request_id, "status": "pending"}))

        def _status(self, request_id: str) -> None:
            if not self._bearer():
                self._answer(401, _dumps({"error": "token expired or invalid"}))
                return
            with state.lock:
                known = any(request["id"] == request_id for request in state.deletion_requests)
            if known:
                self._answer(200, _dumps({"deletion_request_id": request_id, "status": "complete"}))
            else:
                self._answer(404, _dumps({"error": "not found"}))

        def _error(self, status: int, message: str, body: bytes) -> None:
            """An error answer; with echo_body it quotes the request as some servers do: as JSON text, with
            every character \\u-escaped, and as plain text after the JSON."""
            error: dict[str, Any] = {"error": message}
            if state.faults.error_words == "other" and not state.faults.echo_body:
                self._answer(status, b"Unprocessable input." if status < 500 else b"Oops.", content_type="text/plain")
                return
            if not state.faults.echo_body:
                self._answer(status, _dumps(error))
                return
            quoted = body[:2000].decode(errors="replace")
            error["request"] = quoted
            error["escaped"] = "".join(f"\\u{ord(char):04x}" for char in quoted[:500])
            self._answer(status, _dumps(error) + b" " + body[:2000])

        def _trickle(self, interval: float) -> None:
            """A 200 whose body arrives one byte per `interval`, for a minute at least."""
            state.count(200)
            body = b"{" + b" " * max(1, int(60 / interval)) + b"}"
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(interval)
            except OSError:
                self.close_connection = True

        def _throttle(self, retry_after: float | None) -> None:
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self._answer(429, b'{"error": "too many requests"}', headers)

        def _drop(self) -> None:
            state.count(0)
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _answer(
            self,
            status: int,
            body: bytes,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ) -> None:
            state.count(status)
            try:
                self.send_response(status)
            except OSError:
                self.close_connection = True
                return
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            try:
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                self.close_connection = True

    return Handler


def _parse(field: str, body: bytes) -> tuple[str, list[dict[str, Any]]]:
    try:
        document = _loads(body)
    except ValueError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("body is not a JSON object")
    app_id = document.get("app_id")
    if not isinstance(app_id, str):
        raise BadRequest("app_id is required and must be a string")
    if field in document:
        items = document[field]
        if not isinstance(items, list):
            raise BadRequest(f"{field} must be an array")
        if len(items) > MAX_BULK:
            raise BadRequest(f"at most {MAX_BULK} {field} per request, got {len(items)}")
        if not all(isinstance(item, dict) for item in items):
            raise BadRequest(f"every entry of {field} must be an object")
        return app_id, items
    return app_id, [{key: value for key, value in document.items() if key != "app_id"}]


def _basic(header: str) -> str:
    """The `user:password` of an HTTP Basic header, or ''."""
    if not header.startswith("Basic "):
        return ""
    try:
        return base64.b64decode(header[6:], validate=True).decode()
    except ValueError:
        return ""


def _deletion_users(body: bytes, refused: str) -> list[dict[str, str]]:
    """The users of a deletion request, as Heap's reference describes it: `{"users": [...]}`, at most 10,000,
    each an identity or a user_id."""
    try:
        document = _loads(body)
    except ValueError:
        raise BadRequest("body is not JSON") from None
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, list) or not users:
        raise BadRequest("users is required, a non-empty array")
    if set(document) != {"users"}:
        raise BadRequest("user_deletion takes users only")
    if len(users) > MAX_DELETIONS:
        raise BadRequest(f"at most {MAX_DELETIONS} users per request, got {len(users)}")
    for user in users:
        if not isinstance(user, dict) or len(user) != 1 or not set(user) <= {"identity", "user_id"}:
            raise BadRequest("each user is an object with an identity or a user_id")
        if "identity" in user:
            _check_identity(user["identity"])
        else:
            _check_user_id(user["user_id"])
        if refused and refused in user.values():
            raise BadRequest("user refused")
    return users


def _known_app(app_id: str, known: set[str] | None) -> bool:
    """An environment id Heap knows: one of `known`, or (when none are given) any decimal number without a
    leading zero, as Heap's environment ids are."""
    if known is not None:
        return app_id in known
    return app_id.isascii() and app_id.isdigit() and not app_id.startswith("0")


def _validate(field: str, item: dict[str, Any], faults: Faults) -> None:
    poison = faults.poison
    if field == "identify":
        _validate_link(item, faults.strict_times)
        return
    if field == "accounts":
        if not isinstance(item.get("account_id"), str) or not item["account_id"]:
            raise BadRequest("account_id is required and must be a non-empty string")
    elif field == "events" and "user_id" in item:
        if "identity" in item:
            raise BadRequest("use identity or user_id, not both")
        _check_user_id(item["user_id"])
    else:
        _check_identity(item.get("identity"))
    if field == "events":
        event = item.get("event")
        if not isinstance(event, str) or not event or len(event) > MAX_TEXT:
            raise BadRequest(f"event is required, a string of at most {MAX_TEXT} characters")
        _check_timestamp(item, faults.strict_times)
        if "idempotency_key" in item and not isinstance(item["idempotency_key"], str):
            raise BadRequest("idempotency_key must be a string")
    properties = item.get("properties", {})
    if not isinstance(properties, dict):
        raise BadRequest("properties must be an object")
    for key, value in properties.items():
        if len(key) >= MAX_TEXT:
            raise BadRequest("property names must be shorter than 1024 characters")
        if poison and poison in key:
            raise BadRequest(f"property name {key} refused")
        if field == "users" and key.lower() in ("id", "user_id"):
            raise BadRequest(f"'{key}' cannot be a user property")
        if isinstance(value, list) and field != "events" and faults.property_arrays == "refuse":
            raise BadRequest("property values must be strings or numbers")
        values = value if isinstance(value, list) else [value]
        for element in values:
            if isinstance(element, bool) or not isinstance(element, (str, int, float)):
                raise BadRequest("property values must be strings or numbers")
            if isinstance(element, str) and len(element) >= MAX_TEXT:
                raise BadRequest("property values must be shorter than 1024 characters")
            if poison and isinstance(element, str) and poison in element:
                raise BadRequest("property value refused")


class Window:
    """A rate limit as a server may count it: at most `limit` units in any `seconds` (sliding), or in
    each period of `seconds` from `origin` (fixed). A limit of 0 is no limit."""

    def __init__(self, limit: int, seconds: float, fixed: bool, origin: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.fixed = fixed
        self.origin = origin
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def wait(self, units: int, now: float) -> float:
        """Seconds until `units` more would fit (0 when they fit now)."""
        if not self.limit:
            return 0.0
        if self.fixed:
            period = math.floor((now - self.origin) / self.seconds)
            start = self.origin + period * self.seconds
            while self.entries and self.entries[0][0] < start:
                self.total -= self.entries.popleft()[1]
            return 0.0 if self.total + units <= self.limit else start + self.seconds - now
        while self.entries and self.entries[0][0] <= now - self.seconds:
            self.total -= self.entries.popleft()[1]
        excess = self.total + units - self.limit
        if excess <= 0:
            return 0.0
        for when, count in self.entries:
            excess -= count
            if excess <= 0:
                return max(0.001, when + self.seconds - now)
        return self.seconds

    def add(self, units: int, now: float) -> None:
        """Counts units received now."""
        if self.limit:
            self.entries.append((now, units))
            self.total += units


def _rate_wait(state: SandboxState, field: str, items: list[dict[str, Any]]) -> float | None:
    """Seconds until the request would fit the rate limits, or None when it fits now (and is counted).

    The app limit counts items; the identity limit counts events for track and requests holding the
    identity (or account) for the property APIs.
    """
    faults = state.faults
    now = time.monotonic()
    per_identity: dict[str, int] = {}
    if faults.identity_limit:
        for item in items:
            key = str(item.get("identity") or item.get("user_id") or item.get("account_id"))
            per_identity[key] = per_identity.get(key, 0) + 1 if field == "events" else 1
    windows = state.identity_windows
    for key in per_identity:
        if key not in windows:
            windows[key] = Window(faults.identity_limit, faults.identity_window, False, state.started)
    wait = max(
        [state.app_window.wait(len(items), now)]
        + [windows[key].wait(count, now) for key, count in per_identity.items()]
    )
    if wait > 0:
        return wait
    state.app_window.add(len(items), now)
    for key, count in per_identity.items():
        windows[key].add(count, now)
    state.accepted_requests.append((round(now - state.started, 3), len(items)))
    return None


def _validate_link(item: dict[str, Any], strict_times: bool) -> None:
    """Identify takes one pair a call: a user_id as in track, a non-empty identity, an optional timestamp."""
    if set(item) - IDENTIFY_FIELDS:
        raise BadRequest("identify takes user_id, identity and timestamp only, one pair per request")
    _check_user_id(item.get("user_id"))
    _check_identity(item.get("identity"))
    _check_timestamp(item, strict_times)


def _check_user_id(user_id: Any) -> None:
    if not (isinstance(user_id, str) and user_id.isascii() and user_id.isdigit() and int(user_id) < 2**53):
        raise BadRequest("user_id must be a decimal string between 0 and 2^53 - 1")


def _check_identity(identity: Any) -> None:
    if not isinstance(identity, str) or not identity or len(identity) > MAX_IDENTITY:
        raise BadRequest(f"identity is required, a string of at most {MAX_IDENTITY} characters")


ISO_8601 = re.compile(
    r"\d{4}-?\d{2}-?\d{2}(?:[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
RFC_3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))")
"""The sandbox's own readings of a time (no parser shared with the connector): calendar ISO 8601 loosely, and
RFC 3339 with an explicit offset as Heap's reference shows it, fields in range."""


def _check_timestamp(item: dict[str, Any], strict: bool) -> None:
    if "timestamp" not in item:
        return
    value = item["timestamp"]
    if not isinstance(value, str):
        raise BadRequest("timestamp must be a string")
    if not strict:
        if not ISO_8601.fullmatch(value):
            raise BadRequest("timestamp must be ISO 8601")
        return
    found = RFC_3339.fullmatch(value)
    if found is None:
        raise BadRequest("timestamp must be RFC 3339 with an offset")
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    days = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if not (1 <= month <= 12 and 1 <= day <= days[month - 1] and hour < 24 and minute < 60 and second < 60):
        raise BadRequest("timestamp must be RFC 3339 with an offset")


def _link(state: SandboxState, item: dict[str, Any]) -> None:
    """Heap's silent drops: a user_id links to one identity only, an identity takes at most 10 user_ids."""
    user_id, identity = item["user_id"], item["identity"]
    taken = state.user_ids_of.setdefault(identity, set())
    if user_id in state.linked or len(taken) >= USER_IDS_PER_IDENTITY:
        state.links_dropped += state.linked.get(user_id) != identity
        return
    state.linked[user_id] = identity
    taken.add(user_id)
    state.accepted_count += 1
    if state.faults.keep_items:
        state.accepted["identify"].append(item)


def _accept(state: SandboxState, field: str, items: list[dict[str, Any]]) -> None:
    if field == "identify":
        _link(state, items[0])
        return
    accepted = state.accepted[field]
    keep = state.faults.keep_items
    for item in items:
        key = item.get("idempotency_key") if field == "events" else None
        if key is not None:
            if key in state.idempotency_keys:
                state.duplicates += 1
                continue
            state.idempotency_keys.add(key)
        state.accepted_count += 1
        if keep:
            accepted.append(item)


def _knob_type(default: Any) -> Any:
    if isinstance(default, bool):
        return lambda text: text.lower() in ("1", "true", "yes")
    return float if default is None else type(default)


SAMPLES = Path(__file__).resolve().parent.parent / "sample_files"


def main() -> None:
    """Serves the sandbox until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="the port to serve on (default: a free one)")
    parser.add_argument(
        "--configs",
        type=Path,
        help="a folder to write the sample configs into, each with base_url pointing at this sandbox",
    )
    for knob in dataclasses.fields(Faults):
        parser.add_argument(
            f"--{knob.name.replace('_', '-')}",
            type=_knob_type(knob.default),
            default=knob.default,
            help=f"{FAULT_HELP[knob.name]} (default: {knob.default!r})",
        )
    args = parser.parse_args()
    faults = Faults(**{knob.name: getattr(args, knob.name) for knob in dataclasses.fields(Faults)})
    with HeapSandbox(faults, port=args.port) as sandbox:
        print(f"Heap sandbox listening on {sandbox.url}", flush=True)
        if args.configs is not None:
            args.configs.mkdir(parents=True, exist_ok=True)
            for sample in sorted(SAMPLES.glob("config_*.json")):
                config = {**json.loads(sample.read_text()), "base_url": sandbox.url}
                (args.configs / sample.name).write_text(json.dumps(config, indent=2) + "\n")
            print(f"Sample configs pointing at it: {args.configs}/config_*.json", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sandbox.thread.join()


if __name__ == "__main__":
    main()
