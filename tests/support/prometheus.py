"""Prometheus from Debian (server and promtool), fetched once by ``scripts/fetch-prometheus.sh``
into ``~/.cache/llm-twin/prometheus/<version>/`` and found here.

The unit tests run promtool on the chart's rule files; an integration test can start the server
from the same folder (``binary("prometheus")``) to scrape the real services.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def prometheus_home() -> Path:
    """The cached folder (``usr/bin/prometheus``, ``usr/bin/promtool``); downloads and unpacks the
    Debian package on a cold machine (seconds), waiting on the fetch lock if another session is."""
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch-prometheus.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/fetch-prometheus.sh failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def binary(name: str) -> Path:
    """``prometheus`` or ``promtool`` from the cached package."""
    return prometheus_home() / "usr" / "bin" / name
