"""The HTTP client: posts JSON bodies to one Heap endpoint within a deadline and classifies what Heap answers."""

from __future__ import annotations

import contextlib
import enum
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_auth_from_url, get_environ_proxies
from urllib3 import PoolManager, ProxyManager, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, LocationParseError, NewConnectionError
from urllib3.exceptions import TimeoutError as RequestTimeout
from urllib3.util import make_headers, parse_url

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
ANSWER_BYTES = 16_384
WATCHDOG_TICK = 0.1
USER_AGENT = "airbyte-destination-heap-analytics"
APP_ID = re.compile(r"\b(app[\s_-]?id|environment[\s_-]?id)\b", re.IGNORECASE)
WORD = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*")
MAX_WORDS = 12
ELIDED = "…"
VOCABULARY = frozenset(
    """a an the and or of to in for at by with is are be must not no non can cannot should only per than too very
    invalid valid missing required unknown unexpected expected malformed bad wrong empty null undefined allowed
    refused rejected denied forbidden unauthorized unauthorised found error failed failure limit exceeded
    exceeds maximum minimum max min most least long large many length size characters character bytes items
    request requests body payload json object array string number integer decimal boolean value values field
    fields key keys name names type format parse parsing property properties identity identities user users
    user_id account accounts account_id event events timestamp idempotency_key app app_id environment id
    iso utc date time rate throttled slow down retry later internal server service unavailable gateway
    timeout shorter longer between entity""".split()  # noqa: SIM905
)
"""The words of Heap's answers that log lines may repeat: what an error says, never what it quotes."""


class Verdict(enum.Enum):
    """What an answer means for the request that got it."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TOO_LARGE = "too large"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    TLS_FAILED = "tls failed"
    NO_SUCH_HOST = "no such host"
    BAD_APP_ID = "bad app id"
    REDIRECTED = "redirected"
    FATAL = "fatal"


@dataclass(frozen=True)
class Answer:
    """Heap's answer to one request, or the network fault that stood in for one.

    `text` is the start of Heap's body, kept for classification only: it may echo the request, so
    no message shows it; `detail` is what messages show.
    """

    verdict: Verdict
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    text: str = ""

    @property
    def names_app_id(self) -> bool:
        """Whether the answer speaks of the app id (which may be about the request or about one item)."""
        return APP_ID.search(self.text) is not None

    @property
    def refuses_app_id(self) -> bool:
        """For a request that held no item, whether the answer refuses its app id."""
        return self.verdict is Verdict.BAD_APP_ID or (self.verdict is Verdict.REJECTED and self.names_app_id)

    @property
    def head(self) -> str:
        """The answer's class: its HTTP status, or that there was none."""
        return f"HTTP {self.status}" if self.status is not None else "no answer"

    def describe(self) -> str:
        """The status and what Heap's answer says, in words that cannot carry record data."""
        return f'{self.head} ("{self.detail}")' if self.detail else self.head


def heap_words(text: str) -> str:
    """What an answer says in the vocabulary of error messages, in its order: each run of other words (which
    may quote the request) shows as one `…`, and at most MAX_WORDS words are kept."""
    words: list[str] = []
    kept = 0
    for word in WORD.findall(text.lower()):
        if all(part in VOCABULARY for part in word.split("-")):
            words.append(word)
            kept += 1
            if kept == MAX_WORDS:
                break
        elif not words or words[-1] != ELIDED:
            words.append(ELIDED)
    return " ".join(words)


class _Connections:
    """The socket each thread's connection uses and the deadline of the request on it.

    One watchdog thread, started with the first deadline, shuts the socket of a request whose
    deadline has passed, so a request costs two dictionary updates rather than a timer thread.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sockets: dict[int, socket.socket] = {}
        self.deadlines: dict[int, tuple[float, threading.Event]] = {}
        self.watchdog: threading.Thread | None = None

    def register(self, sock: socket.socket) -> None:
        """Records the socket this thread's connection has just opened."""
        with self.lock:
            self.sockets[threading.get_ident()] = sock

    def arm(self, seconds: float) -> threading.Event:
        """Starts this thread's deadline; the event is set if it passes before `disarm`."""
        expired = threading.Event()
        with self.lock:
            self.deadlines[threading.get_ident()] = (time.monotonic() + seconds, expired)
            if self.watchdog is None:
                self.watchdog = threading.Thread(target=self._watch, name="heap-deadlines", daemon=True)
                self.watchdog.start()
        return expired

    def disarm(self) -> None:
        """Ends this thread's deadline."""
        with self.lock:
            self.deadlines.pop(threading.get_ident(), None)

    def shut(self, thread: int | None = None) -> None:
        """Shuts one thread's socket, or every socket when no thread is named."""
        with self.lock:
            sockets = list(self.sockets.values()) if thread is None else [self.sockets.get(thread)]
        for sock in sockets:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _watch(self) -> None:
        while True:
            time.sleep(WATCHDOG_TICK)
            now = time.monotonic()
            with self.lock:
                passed = [thread for thread, (deadline, _) in self.deadlines.items() if deadline <= now]
                expired = [(thread, self.deadlines.pop(thread)[1]) for thread in passed]
            for thread, event in expired:
                event.set()
                self.shut(thread)


CONNECTIONS = _Connections()


class _TrackedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        CONNECTIONS.register(self.sock)


class _TrackedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        CONNECTIONS.register(self.sock)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


TRACKED_POOLS = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class HeapClient:
    """Posts to one Heap endpoint over a kept-alive connection per thread, each request within a deadline.

    The deadline covers the whole exchange, connection to last byte: a server that trickles its
    answer is cut off when it passes, not after each read's timeout. Redirects are never followed.
    The environment's proxy (with its credentials) and CA bundle are read once, the way the requests
    library reads them; posts go through urllib3 alone (requests on top of it cost about 0.9 ms more
    CPU a 1000-item post).
    """

    def __init__(self, url: str, deadline: float = READ_TIMEOUT) -> None:
        self.url = url
        self.deadline = deadline
        self.timeout = Timeout(connect=min(CONNECT_TIMEOUT, deadline), read=deadline)
        parts = parse_url(url)
        proxies = get_environ_proxies(url)
        self.proxy = proxies.get(parts.scheme or "https") or proxies.get("all")
        # The request line names the whole URL to a plain-http proxy, else the path (https is tunneled).
        self.target = url if self.proxy and parts.scheme == "http" else parts.request_uri
        self.ca_certs = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH
        )
        self.headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        self.local = threading.local()

    @property
    def pool(self) -> HTTPConnectionPool:
        """This thread's connection pool to the endpoint, through the proxy when there is one."""
        pool = getattr(self.local, "pool", None)
        if pool is None:
            manager: PoolManager
            if self.proxy:
                user, password = get_auth_from_url(self.proxy)
                credentials = make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
                manager = ProxyManager(self.proxy, proxy_headers=credentials, ca_certs=self.ca_certs)
            else:
                manager = PoolManager(ca_certs=self.ca_certs)
            manager.pool_classes_by_scheme = TRACKED_POOLS
            pool = self.local.pool = manager.connection_from_url(self.url)
        return pool

    def post(self, body: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        """Sends one body (with `headers` besides the usual ones) and says what came back, within the deadline."""
        expired = CONNECTIONS.arm(self.deadline)
        try:
            response = self.pool.urlopen(
                "POST",
                self.target,
                body=body,
                headers={**self.headers, **headers} if headers else self.headers,
                timeout=self.timeout,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
            )
            try:
                text = response.read(ANSWER_BYTES, decode_content=True).decode("utf-8", "replace")
            finally:
                if not response.closed:
                    response.close()
                response.release_conn()
            return classify(response.status, response.headers, text)
        except (HTTPError, OSError, ValueError) as error:
            if expired.is_set():
                return Answer(Verdict.TRANSIENT, detail=f"no complete answer within {self.deadline:g}s")
            # urllib3 keeps NewConnectionError a kind of timeout for history's sake: a refused connection is not one.
            if isinstance(error, RequestTimeout) and not isinstance(error, NewConnectionError):
                return Answer(Verdict.TRANSIENT, detail=f"timed out ({type(error).__name__})")
            if any(isinstance(inner, socket.gaierror) for inner in _causes(error)):
                return Answer(Verdict.NO_SUCH_HOST, detail="its host name does not resolve")
            handshake = _tls_error(error)
            if handshake is not None:
                return Answer(Verdict.TLS_FAILED, detail=f"TLS handshake failed: {handshake}")
            return Answer(Verdict.TRANSIENT, detail=f"connection failed ({_root_cause(error)})")
        finally:
            CONNECTIONS.disarm()
            if expired.is_set():
                self.local.pool = None


def abort_all() -> None:
    """Cuts every connection in use, so threads blocked on a stalled answer return at once."""
    CONNECTIONS.shut()


def classify(status: int, headers: Mapping[str, str], body: str) -> Answer:
    """The verdict for an HTTP answer from Heap."""
    text = " ".join(body.split())
    detail = heap_words(text)
    if 200 <= status < 300:
        return Answer(Verdict.ACCEPTED, status, text=body)
    if 300 <= status < 400:
        return Answer(Verdict.REDIRECTED, status, f"redirected to {safe_location(headers.get('Location'))}")
    if status == 429:
        return Answer(Verdict.THROTTLED, status, detail, retry_after_seconds(headers.get("Retry-After")), text)
    if status >= 500 or status == 408:
        return Answer(Verdict.TRANSIENT, status, detail, text=text)
    if status in (401, 403):
        return Answer(Verdict.BAD_APP_ID, status, detail, text=text)
    if status == 400:
        return Answer(Verdict.REJECTED, status, detail, text=text)
    if status == 413:
        return Answer(Verdict.TOO_LARGE, status, detail, text=text)
    return Answer(Verdict.FATAL, status, detail, text=text)


def origin_of(url: str) -> str:
    """A URL's scheme, host and port: what a message may name of where requests go."""
    parts = parse_url(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host}{port}"


def safe_location(location: str | None) -> str:
    """Where a redirect points, as scheme, host and port only: no credentials, path or query."""
    if not location:
        return "no Location"
    try:
        parts = parse_url(location.strip())
    except LocationParseError:
        return "an unreadable Location"
    if not parts.host:
        return "a relative Location on the same host"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or '?'}://{parts.host[:100]}{port}"


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header, given in seconds or as an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _tls_error(error: BaseException) -> str | None:
    """What a failed TLS handshake said (OpenSSL's reason code), or None when the error is not one."""
    for inner in _causes(error):
        if isinstance(inner, ssl.SSLError):
            reason = getattr(inner, "verify_message", None) or inner.reason or type(inner).__name__
            return str(reason)[:80]
    return None


def _root_cause(error: BaseException) -> str:
    *_, root = _causes(error)
    return type(root).__name__


def _causes(error: BaseException) -> list[BaseException]:
    """An error and what it wraps, outermost first: its cause or context, or the error urllib3 holds as its
    first argument (an SSLError holds OpenSSL's), at most ten deep."""
    chain = [error]
    while len(chain) < 10:
        inner = error.__cause__ or error.__context__
        if inner is None and error.args and isinstance(error.args[0], BaseException):
            inner = error.args[0]
        if inner is None:
            break
        chain.append(inner)
        error = inner
    return chain
