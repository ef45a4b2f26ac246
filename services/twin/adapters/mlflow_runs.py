"""MLflow training runs as the port :class:`twin.ports.TrainingRun`, and a picklable writer of step
metrics for the Ray Train worker (which logs into the driver's run from another process).

Split from :mod:`twin.adapters.mlflow_store` (which opens these runs) to keep each module small.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class MlflowTrainingRun:
    """An open training run (port :class:`twin.ports.TrainingRun`), from :meth:`MlflowStore.training_run`."""

    def __init__(self, client: Any, tracking_uri: str, run_id: str) -> None:
        self._client = client
        self._tracking_uri = tracking_uri
        self.run_id = run_id

    def metric_writer(self) -> RunMetricWriter:
        return RunMetricWriter(self._tracking_uri, self.run_id)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = now_ms()
        self._client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def log_adapter(self, directory: Path) -> None:
        self._client.log_artifacts(self.run_id, str(directory), "adapter")

    def log_json(self, data: Any, artifact_file: str) -> None:
        self._client.log_text(
            self.run_id, json.dumps(data, indent=2, ensure_ascii=False, default=str), artifact_file
        )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


class RunMetricWriter:
    """Step metrics into one run from any process (a Ray Train worker): it pickles as its tracking
    URI and run id, and opens its own client on first use."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "run_id": self.run_id, "_client": None}

    def __call__(self, metrics: Sequence[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        now = now_ms()
        self._client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step) for k, v, step in metrics]
        )


def log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
        client.log_batch(run_id, params=items[i : i + 100])


def now_ms() -> int:
    return int(time.time() * 1000)
