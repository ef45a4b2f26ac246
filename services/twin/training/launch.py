"""The two pieces of a training run that execute on Ray: the Ray Train ``TorchTrainer`` fit, and
the evaluation as one Ray task.

Both assume this process is connected to Ray (the composition root connects; see
:mod:`twin.training.hardware`). The evaluation task runs in another process, possibly on another
node, so everything it gets pickles: the registry comes as a factory (it rebuilds its own client
there and downloads the adapters by run id), the base model as a name plus a resolver.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from twin.domain.dataset import Sample
from twin.domain.training import TrainingPlan
from twin.ports import ModelRegistry
from twin.training.evaluate import EvalConfig, EvalReport
from twin.training.lora import LoopConfig

Step = Callable[[int, int, float], None]


def fit(
    config: LoopConfig,
    plan: TrainingPlan,
    *,
    cpus: int,
    results_dir: Path,
    on_step: Step | None = None,
) -> Any:
    """Run the TorchTrainer with ``cpus`` threads per worker; progress from rank 0 arrives over a
    Ray queue and is handed to ``on_step``. Returns Ray Train's result (metrics, the adapter as
    its checkpoint); a worker's own exception is raised as itself (an InvalidSpec stays one)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    from twin.training.lora import train_loop_per_worker

    queue: Any = Queue() if on_step is not None else None
    config = replace(config, progress=queue, threads=cpus)
    done = threading.Event()

    def pump() -> None:
        while not done.is_set():
            try:
                _, step, total, loss = queue.get(timeout=0.5)
            except Empty:
                continue
            except Exception:  # the queue actor went away with the run
                return
            if on_step is not None:
                on_step(step, total, loss)

    reader = threading.Thread(target=pump, name="train-progress", daemon=True)
    if queue is not None:
        reader.start()
    resources: dict[str, float] = {"CPU": cpus}
    if plan.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config.to_dict(),
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers, use_gpu=plan.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=f"{config.extra['run_key']}-{int(time.time())}", storage_path=str(results_dir.resolve())
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        # Ray wraps a worker's exception; surface the worker's own error (an InvalidSpec stays one).
        cause = exc.__cause__
        if isinstance(cause, Exception):
            raise cause from exc
        raise
    finally:
        done.set()
        if queue is not None:
            reader.join(5)
            queue.shutdown()
    error = getattr(result, "error", None)
    if isinstance(error, BaseException):
        raise error
    return result


def evaluate_on_ray(
    *,
    registry: Callable[[], ModelRegistry],
    resolve_model: Callable[[str], str],
    base_model: str,
    adapters: Mapping[str, str],
    heldout: Sequence[Sample],
    config: EvalConfig,
    plan: TrainingPlan,
    style_for: Sequence[str],
) -> EvalReport:
    """:func:`twin.training.evaluate.evaluate` as a Ray task where the cluster has room for it (a
    GPU when training had one); ``adapters`` maps a name to the run id that uploaded it."""
    import ray

    remote: Any = ray.remote(num_cpus=config.threads, num_gpus=1 if plan.use_gpu else 0)
    task: Any = remote(_evaluate_task)
    report: EvalReport = ray.get(
        task.remote(
            registry=registry,
            resolve_model=resolve_model,
            base_model=base_model,
            adapters=dict(adapters),
            heldout=[s.to_json() for s in heldout],
            config=config,
            dtype=plan.dtype if plan.use_gpu else "float32",
            style_for=list(style_for),
        )
    )
    return report


def _evaluate_task(
    *,
    registry: Callable[[], ModelRegistry],
    resolve_model: Callable[[str], str],
    base_model: str,
    adapters: dict[str, str],
    heldout: list[dict[str, Any]],
    config: EvalConfig,
    dtype: str,
    style_for: list[str],
) -> EvalReport:
    """The task body: adapters fetched from the registry by run id into a scratch directory."""
    from twin.training.evaluate import evaluate

    store = registry()
    base = resolve_model(base_model)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {
            name: str(store.download_run_adapter(run_id, Path(tmp) / name))
            for name, run_id in adapters.items()
        }
        return evaluate(
            base, dirs, [Sample.from_json(s) for s in heldout], config, dtype=dtype, style_for=style_for
        )
