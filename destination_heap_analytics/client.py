"""The HTTP client: posts JSON bodies to one Heap endpoint and classifies what Heap answers."""

from __future__ import annotations

import enum
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
EXCERPT = 200
TEXT_CAP = 4000
USER_AGENT = "airbyte-destination-heap-analytics"
APP_ID = r"(app[\W_]?id|environment)"
BAD_APP_ID = re.compile(
    rf"(invalid|unknown|bad)[\W_]{{0,3}}{APP_ID}|{APP_ID}[\W_]{{0,3}}(is[\W_])?(invalid|unknown|not found)",
    re.IGNORECASE,
)


class Verdict(enum.Enum):
    """What an answer means for the request that got it."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TOO_LARGE = "too large"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    BAD_APP_ID = "bad app id"
    FATAL = "fatal"


@dataclass(frozen=True)
class Answer:
    """Heap's answer to one request, or the network fault that stood in for one."""

    verdict: Verdict
    status: int | None = None
    text: str = ""
    retry_after: float | None = None

    def describe(self, text: str | None = None) -> str:
        """The status and a short excerpt of the answer (or of `text`, a redacted copy of it), for messages."""
        head = f"HTTP {self.status}" if self.status is not None else "no answer"
        excerpt = (self.text if text is None else text)[:EXCERPT]
        return f"{head}: {excerpt}" if excerpt else head


class HeapClient:
    """Posts to one Heap endpoint over a kept-alive session per thread, with explicit timeouts."""

    def __init__(self, url: str, read_timeout: float = READ_TIMEOUT) -> None:
        self.url = url
        self.timeout = (CONNECT_TIMEOUT, read_timeout)
        self.local = threading.local()

    @property
    def session(self) -> requests.Session:
        """This thread's session (requests sessions are not shared across threads).

        The environment's proxy and CA-bundle settings are read once here rather than on every
        request (trust_env), which costs requests a sixth of its time per call; there is one URL.
        """
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
            session.proxies = requests.utils.get_environ_proxies(self.url)
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            session.trust_env = False
        return session

    def post(self, body: bytes) -> Answer:
        """Sends one body and says what came back."""
        try:
            response = self.session.post(self.url, data=body, timeout=self.timeout)
        except requests.Timeout as error:
            return Answer(Verdict.TRANSIENT, text=f"timed out ({type(error).__name__})")
        except requests.ConnectionError as error:
            return Answer(Verdict.TRANSIENT, text=f"connection failed ({_root_cause(error)})")
        return classify(response)


def classify(response: requests.Response) -> Answer:
    """The verdict for an HTTP response from Heap."""
    status = response.status_code
    text = " ".join(response.text[:TEXT_CAP].split())
    if 200 <= status < 300:
        return Answer(Verdict.ACCEPTED, status)
    if status == 429:
        return Answer(Verdict.THROTTLED, status, text, retry_after_seconds(response.headers.get("Retry-After")))
    if status >= 500 or status == 408:
        return Answer(Verdict.TRANSIENT, status, text)
    if status in (401, 403) or (status == 400 and _names_app_id(text)):
        return Answer(Verdict.BAD_APP_ID, status, text)
    if status == 400:
        return Answer(Verdict.REJECTED, status, text)
    if status == 413:
        return Answer(Verdict.TOO_LARGE, status, text)
    return Answer(Verdict.FATAL, status, text)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header, given in seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _names_app_id(text: str) -> bool:
    return BAD_APP_ID.search(text) is not None


def _root_cause(error: BaseException) -> str:
    for _ in range(10):
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return type(error).__name__
