"""The ``/metrics`` endpoint of a process, and the short wait a finishing process owes Prometheus.

A crawl or a training run ends between two scrapes more often than not; its last counters (the run's
outcome, the documents it wrote) would then never reach Prometheus. There is no Pushgateway here
(decision in docs/observability.md): instead the endpoint counts the scrapes it has answered, and
:meth:`MetricsEndpoint.linger` keeps the process up until one more scrape has read the final values,
or a deadline passes. A Kubernetes Job pays at most that deadline; a process nobody scrapes pays it
whole, which is why the CLI's ``--metrics-linger`` defaults to 0.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

# The exit status of a process stopped by SIGTERM (the CLI turns the signal into sys.exit(128 + 15)):
# a pod being deleted must not wait for a scrape, its grace period is shorter than any linger.
_TERMINATED = 128 + 15


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """One line per scrape on stderr would drown the command's own progress."""


class _Sent:
    """A response body whose ``close()`` (called by the WSGI server once every byte is written to
    the socket) reports the scrape: counting when the body is merely rendered would let a process
    exit before Prometheus has read it."""

    def __init__(self, body: Iterable[bytes], on_sent: Callable[[], None]) -> None:
        self._body = body
        self._on_sent = on_sent

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        self._on_sent()


class MetricsEndpoint:
    """``/metrics`` served from a daemon thread, counting the scrapes it has answered."""

    def __init__(self, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 -- scraped in-cluster
        self._app = make_wsgi_app(REGISTRY)
        self._answered = threading.Condition()
        self._scrapes = 0
        self._final = False  # set by linger(): the values are final from then on
        self._final_scrapes = 0  # scrapes rendered after that, and sent
        self._server = make_server(host, port, self._count, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def _count(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            body: Iterable[bytes] = self._app(environ, start_response)
            return body
        with self._answered:
            final = self._final  # read before rendering: this scrape reads values at least this new
        rendered = self._app(environ, start_response)

        def sent() -> None:
            with self._answered:
                self._scrapes += 1
                self._final_scrapes += final
                self._answered.notify_all()

        return _Sent(rendered, sent)

    @property
    def scrapes(self) -> int:
        """Scrapes answered in full (their body sent)."""
        with self._answered:
            return self._scrapes

    def linger(self, seconds: float) -> bool:
        """The values are final: wait until a scrape rendered after this call has been sent, at most
        ``seconds``. True when one was."""
        if seconds <= 0:
            return False
        deadline = time.monotonic() + seconds
        with self._answered:
            self._final = True
            while not self._final_scrapes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._answered.wait(left)
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(port: int, host: str = "0.0.0.0") -> MetricsEndpoint:  # noqa: S104 -- scraped in-cluster
    """Expose ``/metrics`` on ``host:port`` (0: any free port) from a daemon thread."""
    return MetricsEndpoint(port, host)


@contextmanager
def metrics_while_running(port: int | None, linger: float = 0.0) -> Iterator[MetricsEndpoint | None]:
    """Serve ``/metrics`` on ``port`` (None: not at all; 0: any free port) for the block; when it ends,
    however it ends, wait up to ``linger`` seconds for a last scrape, unless the process was terminated."""
    if port is None:
        yield None
        return
    endpoint = serve_metrics(port)
    try:
        yield endpoint
    except SystemExit as exc:
        if exc.code != _TERMINATED:
            _last_scrape(endpoint, linger)
        raise
    except BaseException:
        _last_scrape(endpoint, linger)
        raise
    else:
        _last_scrape(endpoint, linger)


def _last_scrape(endpoint: MetricsEndpoint, linger: float) -> None:
    if linger <= 0:
        return
    print(f"metrics: waiting up to {linger:g} s for a last scrape of :{endpoint.port}", file=sys.stderr)
    if not endpoint.linger(linger):
        print("metrics: no scrape came; the final values were not collected", file=sys.stderr)
