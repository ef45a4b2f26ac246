"""``python -m twin_operator``: run the TwinProfile operator (kopf) until SIGTERM/SIGINT.

Configuration comes from the environment only (the chart renders its values into it):
``TWIN_OPERATOR_*`` for the operator (:class:`twin_operator.config.OperatorSettings`,
:class:`twin_operator.runtime.RuntimeSettings`), ``TWIN_*`` for the twin settings the stores are
reached with (``TWIN_DATABASE__DSN``, ``TWIN_TRAINING__MLFLOW_TRACKING_URI``), and ``KUBECONFIG``
or the pod's service account for the API server.

Watches every namespace unless ``TWIN_OPERATOR_NAMESPACES`` names some. With
``TWIN_OPERATOR_PEERING`` set, replicas elect one active operator through kopf's peering objects
(cluster-wide when watching every namespace); otherwise it runs ``--standalone`` (one replica).
A liveness endpoint is served on ``TWIN_OPERATOR_LIVENESS_PORT`` (``/healthz``), and Prometheus
metrics (each profile's conditions, counts and champion) on ``TWIN_OPERATOR_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import os
import sys

import kopf

from twin.observability import serve_metrics
from twin.settings import Settings
from twin.wiring import profile_data
from twin_operator import handlers
from twin_operator.config import OperatorSettings
from twin_operator.kube import Kube
from twin_operator.runtime import Runtime, RuntimeSettings


def _quiet_timer(record: logging.LogRecord) -> bool:
    """Drop kopf's "Timer 'timer' succeeded." line: the timer ticks every few seconds."""
    return not record.getMessage().startswith("Timer 'timer' succeeded")


def main(argv: list[str] | None = None) -> int:
    del argv  # no options: the environment is the configuration (as in the chart's Deployment)
    # The champion's dataset is read from MLflow now and then: no progress bars in the operator's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    operator = OperatorSettings()
    process = RuntimeSettings()
    config = operator.config()
    kopf.configure(verbose=process.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("twin_operator").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_timer)

    runtime = Runtime(
        kube=Kube.from_environment(field_manager=config.field_manager, timeout_s=process.api_timeout_s),
        data=profile_data(Settings()),
        config=config,
        features_deployments=process.features_deployments,
    )
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    handlers.register(runtime)

    namespaces = list(operator.namespaces)
    if process.metrics_port:
        serve_metrics(process.metrics_port)
    port = process.liveness_port
    kopf.run(
        settings=settings,
        standalone=operator.peering is None,
        peering_name=operator.peering,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{port}/healthz" if port else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
