"""A Heap stand-in for the client's and sender's tests: a real HTTP server on 127.0.0.1 answering each POST as
the test scripts it, and keeping what it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RESET = "reset"
"""An answer that closes the connection without a response."""


@dataclass(frozen=True)
class Received:
    """One POST as the server received it."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """An answer: status, body text and headers; `stall` seconds of silence first."""

    status: int = 200
    text: str = "{}"
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0


Script = Reply | str | Callable[[Received], Reply]


class ScriptedHeap:
    """Answers POSTs with the scripted replies in turn, the last one for every later request; a reply may be a
    function of the request."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Script] = [Reply()]
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/track"

    @property
    def call_count(self) -> int:
        return len(self.received)

    def answer(self, *script: Script) -> None:
        """Replaces the script and forgets what was received."""
        with self.lock:
            self.script = list(script)
            self.received = []

    def __enter__(self) -> ScriptedHeap:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next(self, request: Received) -> Script:
        with self.lock:
            self.received.append(request)
            reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return reply(request) if callable(reply) else reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        heap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = heap._next(Received(self.path, body, dict(self.headers)))
                if reply == RESET:
                    self.close_connection = True
                    return
                time.sleep(reply.stall)
                data = reply.text.encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
