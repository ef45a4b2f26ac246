"""Prometheus from Debian (server and promtool), fetched once by ``scripts/fetch-prometheus.sh``
into ``~/.cache/llm-twin/prometheus/<version>/`` and found here.

The unit tests run promtool on the chart's rule files; integration tests start the server from
the same folder (:class:`PrometheusServer`) to scrape the real services.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twin.devtools.dashboard_queries import Prometheus

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


class PrometheusServer:
    """A real Prometheus for a test: scraping every second, the chart's rule files loaded, one
    file-discovered job per name in ``jobs``. A process is a target only inside :meth:`target`,
    as a pod is on a cluster (a static target would be "down" until it starts, and alert)."""

    def __init__(self, home: Path, jobs: tuple[str, ...], scrape: str = "1s") -> None:
        import yaml

        from support.processes import free_port

        self.home = home
        (home / "targets").mkdir(parents=True)
        for job in jobs:
            (home / "targets" / f"{job}.json").write_text("[]")
        config = {
            "global": {"scrape_interval": scrape, "scrape_timeout": scrape, "evaluation_interval": scrape},
            "rule_files": [str(p) for p in sorted((REPO / "charts" / "twin" / "alerts").glob("*.yaml"))],
            "scrape_configs": [
                {"job_name": job, "file_sd_configs": [{"files": [str(home / "targets" / f"{job}.json")]}]}
                for job in jobs
            ],
        }
        (home / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self._log = home / "prometheus.log"
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Prometheus:
        """Start it and wait until it is ready; the client is :attr:`client` too."""
        from support.processes import wait_for

        with self._log.open("w") as handle:
            self._proc = subprocess.Popen(
                [
                    str(binary("prometheus")),
                    f"--config.file={self.home / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.home / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.client = Prometheus(f"http://127.0.0.1:{self.port}")

        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self._log.read_text()[-4000:]}")
            return self.client.ready()

        wait_for(ready, 60, "Prometheus to be ready")
        return self.client

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(30)
        if hasattr(self, "client"):
            self.client.close()

    @contextmanager
    def target(self, job: str, port: int, **labels: str) -> Iterator[None]:
        """``job`` scrapes 127.0.0.1:``port`` for the block (Prometheus watches the file)."""
        from support.processes import wait_for

        path = self.home / "targets" / f"{job}.json"
        path.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": labels}]))

        def active() -> bool:
            found = self.client._get("/api/v1/targets", {"state": "active"})["activeTargets"]
            return any(t["labels"].get("job") == job for t in found)

        wait_for(active, 60, f"Prometheus to discover {job}")
        try:
            yield
        finally:
            path.write_text("[]")

    def value(self, expr: str) -> float:
        """The first series' value of ``expr`` now (0 when there is none)."""
        found = self.client.instant(expr, time.time())
        return found[0].points[-1][1] if found else 0.0
