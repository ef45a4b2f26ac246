"""/metrics of the operator's batch pods: crawl pods and the training RayJob's driver.

Both run a ``twin`` command that serves Prometheus /metrics while it works (``--metrics-port``) and,
with ``--metrics-linger``, until Prometheus has scraped once more after the work ends: a crawl Job
may finish between two scrapes, and its last counters would be lost. The chart's ``twin-jobs``
PodMonitor finds these pods by ``llmtwin.dev/role`` (crawler, train) and scrapes the container port
named ``metrics``; the crawl pods' NetworkPolicy denies all other ingress, so it admits Prometheus
(and nothing else) on that port. :class:`~twin_operator.config.JobMetricsConfig` with ``port: 0``
turns all of it off.
"""

from __future__ import annotations

from typing import Any

from twin_operator.config import JobMetricsConfig

PORT_NAME = "metrics"

Obj = dict[str, Any]


def flags(metrics: JobMetricsConfig) -> list[str]:
    """The arguments appended to ``twin crawl`` / ``twin train``; none when metrics are off."""
    if not metrics.enabled:
        return []
    return ["--metrics-port", str(metrics.port), "--metrics-linger", str(metrics.linger_s)]


def container_ports(metrics: JobMetricsConfig) -> list[Obj]:
    """The named port the PodMonitor scrapes (it matches by name, so the number may change)."""
    if not metrics.enabled:
        return []
    return [{"name": PORT_NAME, "containerPort": metrics.port, "protocol": "TCP"}]


def ingress(metrics: JobMetricsConfig) -> list[Obj]:
    """NetworkPolicy ingress: Prometheus, and only on the metrics port. Both selectors sit in one
    peer, so a pod must match both (the Prometheus pods, in Prometheus's namespace)."""
    if not metrics.enabled:
        return []
    peer: Obj = {"namespaceSelector": {"matchLabels": dict(metrics.prometheus_namespace_labels)}}
    if metrics.prometheus_pod_labels:
        peer["podSelector"] = {"matchLabels": dict(metrics.prometheus_pod_labels)}
    return [{"from": [peer], "ports": [{"protocol": "TCP", "port": metrics.port}]}]


__all__ = ["PORT_NAME", "container_ports", "flags", "ingress"]
