"""What the training run can use: GPUs on the Ray cluster, bf16, bitsandbytes, CPUs per worker, and
the versions to record with the run.

Every probe asks the Ray this process is already connected to (the composition root connects:
:func:`twin.wiring.ensure_ray`); nothing here starts Ray. The answers feed the pure
:func:`twin.domain.training.plan_training`.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

from twin.domain.training import Hardware, TrainingPlan


def detect_hardware() -> Hardware:
    """GPUs the Ray cluster offers (the driver may have none), bf16 and bitsandbytes support."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    bf16 = False
    if gpus:
        import torch

        # The driver may have no GPU of its own: cluster GPUs are assumed recent (bf16) unless seen otherwise.
        bf16 = bool(torch.cuda.is_bf16_supported()) if torch.cuda.is_available() else True
    return Hardware(gpus=gpus, bf16=bf16, bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None)


def worker_cpus(wanted: int, *, ray_local: bool) -> int:
    """CPUs (torch threads) per worker; on a local Ray, never more than the machine has (a request
    no node can meet would wait forever). A cluster may autoscale, so its request stands."""
    if not ray_local:
        return wanted
    import ray

    return max(1, min(wanted, int(ray.cluster_resources().get("CPU", 1))))


def system_info(plan: TrainingPlan) -> dict[str, str]:
    """The software and device a run used, recorded as its ``system.*`` tags."""
    import peft
    import ray
    import torch
    import transformers

    info = {
        "system.python": sys.version.split()[0],
        "system.platform": platform.platform(),
        "system.cpu_count": str(os.cpu_count()),
        "system.torch": torch.__version__,
        "system.transformers": transformers.__version__,
        "system.peft": peft.__version__,
        "system.ray": ray.__version__,
        "system.device": "cuda" if plan.use_gpu else "cpu",
    }
    if torch.cuda.is_available():
        info["system.gpu"] = torch.cuda.get_device_name(0)
    return info
