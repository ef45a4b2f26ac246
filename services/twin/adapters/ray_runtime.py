"""Ray start-up: join a cluster or start a local Ray once per process.

Called only by :mod:`twin.wiring` (and by the adapters it builds); pipelines use Ray's APIs
(Ray Train, tasks, Serve) on whatever Ray the composition root started.
"""

from __future__ import annotations

import logging


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join ``address`` or start a local Ray once per process (no dashboard, quiet)."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            # Ray runs workers at nice 15 by default; the embedding actors are this process's main
            # work, and on a small machine nice 15 lost a third of their speed to everything else.
            _system_config={"worker_niceness": 0},
        )
