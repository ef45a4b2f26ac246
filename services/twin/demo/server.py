"""A tiny threaded HTTP server for fixture sites (stdlib only: fixtures must not need the crawler)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Protocol
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    base_url: str  # e.g. "http://127.0.0.1:18701"
    received_at: float = field(default_factory=time.monotonic)

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (timeouts in tests)

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status=status, body=text)

    @classmethod
    def json(cls, text: str, status: int = 200) -> Response:
        return cls(status=status, body=text, content_type="application/json; charset=utf-8")

    @classmethod
    def xml(cls, text: str, content_type: str = "application/rss+xml; charset=utf-8") -> Response:
        return cls(body=text, content_type=content_type)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        return cls(status=status, headers={"Location": location}, body=b"")

    @classmethod
    def not_found(cls) -> Response:
        return cls(status=404, body="<html><body><h1>404 Not Found</h1></body></html>")


class Site(Protocol):
    """A fixture site: answers a request or returns None for 404."""

    def respond(self, request: Request) -> Response | None: ...


ROBOTS_ALLOW_ALL = "User-agent: *\nAllow: /\n"


class SiteServer:
    """Serve one :class:`Site` on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(self, site: Site, port: int = 0, host: str = "127.0.0.1") -> None:
        self.site = site
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[Request] = []  # every request seen, for tests that count fetches

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SiteServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet by default
                return

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    base_url=outer.base_url,
                )
                outer.requests.append(request)
                if parts.path == "/robots.txt":
                    robots = outer.site.respond(request)
                    response = robots or Response(body=ROBOTS_ALLOW_ALL, content_type="text/plain")
                else:
                    response = outer.site.respond(request) or Response.not_found()
                if response.delay_s:
                    time.sleep(response.delay_s)
                payload = response.body.encode("utf-8") if isinstance(response.body, str) else response.body
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", response.content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (timeouts, size caps): expected in tests

            do_GET = _handle
            do_POST = _handle
            do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                # Clients that give up (timeouts, size caps) reset the connection: expected, not news.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        self._server = Server((self._host, self._port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fixture-site", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
