"""``twin serve``: start Ray Serve with the profile's application and serve until a signal.

Ray Serve's HTTP proxy listens on ``TWIN_SERVING__HOST:PORT`` (set explicitly: Ray would otherwise
pick the node's address). The command returns once the application is up and the engine has
synced with the registry (``/ready``), prints where it serves, and blocks; SIGTERM or SIGINT shuts
the application and Ray down cleanly (vLLM's engine process with them).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from twin.domain.profile import TwinProfile
from twin.settings import Settings


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


def start(profile: TwinProfile, settings: Settings) -> str:
    """Start the application (non-blocking); return its base URL."""
    from ray import serve

    from twin.features.embedding import ensure_ray
    from twin.serving.app import build_app
    from twin.serving.engine_server import validate_serving
    from twin.store import database_dsn

    validate_serving(profile, settings)
    s = settings.serving
    dsn = database_dsn(settings)
    ensure_ray(s.ray_address)
    serve.start(http_options={"host": s.host, "port": s.port}, detached=False)
    serve.run(
        build_app(profile, settings, dsn), name=f"twin-{profile.name}", route_prefix="/", blocking=False
    )
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host  # noqa: S104 -- we only connect to it
    return f"http://{host}:{s.port}"


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def serve_forever(
    profile: TwinProfile,
    settings: Settings,
    *,
    ready_timeout_s: float = 600,
    on_ready: Callable[[str, dict[str, Any]], None],
) -> None:
    stopping = threading.Event()
    previous: dict[int, Any] = {}
    try:
        url = start(profile, settings)
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
