"""The ``/metrics`` endpoint of short-lived commands (``twin.observability.endpoint``): it serves the
real registry, counts scrapes, and a finishing process waits for one more scrape (``--metrics-linger``)
but never after SIGTERM. Real HTTP on a free port; the scraper is a thread with urllib."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from twin.observability import training
from twin.observability.endpoint import metrics_while_running, serve_metrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_the_endpoint_serves_the_registry_and_counts_scrapes() -> None:
    endpoint = serve_metrics(0, "127.0.0.1")
    try:
        assert endpoint.scrapes == 0
        scrape(endpoint.port)
        assert "# TYPE twin_crawl_pages_total counter" in scrape(endpoint.port)
        assert endpoint.scrapes == 2
    finally:
        endpoint.close()


def test_linger_returns_once_a_scrape_has_read_the_final_values() -> None:
    """A scraper polls as Prometheus does; the final value is set, then linger() returns only after
    a scrape rendered from then on was sent (so that scrape's body holds the final value)."""
    endpoint = serve_metrics(0, "127.0.0.1")
    runs = training.TRAINING_RUNS.labels("linger-test", "trained")
    bodies: list[str] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            bodies.append(scrape(endpoint.port))
            time.sleep(0.05)

    thread = threading.Thread(target=scraper)
    try:
        thread.start()
        wait = time.monotonic() + 10
        while not bodies and time.monotonic() < wait:  # a scrape of the old value first
            time.sleep(0.01)
        runs.inc()
        final = runs._value.get()
        assert endpoint.linger(30) is True
    finally:
        stop.set()
        thread.join(10)
        endpoint.close()
    line = f'twin_training_runs_total{{outcome="trained",profile="linger-test"}} {final}'
    assert any(line in body for body in bodies)


def test_linger_gives_up_at_its_deadline_and_zero_means_no_wait() -> None:
    endpoint = serve_metrics(0, "127.0.0.1")
    try:
        began = time.monotonic()
        assert endpoint.linger(0.2) is False
        assert time.monotonic() - began >= 0.2
        assert endpoint.linger(0) is False
    finally:
        endpoint.close()


def test_no_port_serves_nothing() -> None:
    with metrics_while_running(None, 30) as endpoint:
        assert endpoint is None


@pytest.mark.parametrize(("code", "waits"), [(1, True), (143, False)])
def test_a_failing_command_lingers_but_a_terminated_one_does_not(code: int, waits: bool) -> None:
    began = time.monotonic()
    with pytest.raises(SystemExit), metrics_while_running(0, 0.3):
        raise SystemExit(code)
    assert (time.monotonic() - began >= 0.3) is waits
