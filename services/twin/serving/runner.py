"""``twin serve``: start Ray Serve with the profile's application and serve until a signal.

The caller (the ``twin`` CLI) has checked the settings, joined or started Ray and built the
factories (:func:`twin.wiring.serving_deps`); this module only runs the application. Ray Serve's
HTTP proxy listens on ``config.host:port`` (set explicitly: Ray would otherwise pick the node's
address). :func:`serve_forever` returns once the application is up and the engine has synced with
the registry (``/ready``), reports where it serves, and blocks; SIGTERM or SIGINT shuts the
application and Ray down cleanly (vLLM's engine process with them).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from twin.domain.profile import TwinProfile
from twin.ports import ServingDeps
from twin.settings import ServingSettings


def wait_ready(url: str, timeout_s: float) -> dict[str, Any]:
    """Poll ``/ready`` until it answers 200; raise TimeoutError with the last answer."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/ready", timeout=5)
            last = response.text
            if response.status_code == 200:
                status: dict[str, Any] = response.json()
                return status
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{url} was not ready after {timeout_s:.0f}s (last answer: {last})")


def start(profile: TwinProfile, config: ServingSettings, deps: ServingDeps) -> str:
    """Start the application on the running Ray (non-blocking); return its base URL."""
    from ray import serve

    from twin.serving.app import build_app

    serve.start(http_options={"host": config.host, "port": config.port}, detached=False)
    serve.run(build_app(profile, config, deps), name=f"twin-{profile.name}", route_prefix="/", blocking=False)
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host  # noqa: S104 -- we only connect to it
    return f"http://{host}:{config.port}"


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def serve_forever(
    profile: TwinProfile,
    config: ServingSettings,
    deps: ServingDeps,
    *,
    ready_timeout_s: float = 600,
    on_ready: Callable[[str, dict[str, Any]], None],
) -> None:
    stopping = threading.Event()
    previous: dict[int, Any] = {}
    try:
        url = start(profile, config, deps)
        # After Ray starts: its own fatal-signal handler would otherwise kill the process on SIGTERM
        # before Serve (and vLLM's engine process) could shut down.
        previous = {
            sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        on_ready(url, wait_ready(url, ready_timeout_s))
        while not stopping.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop()
