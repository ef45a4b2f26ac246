"""Ray: join the configured cluster or start a local Ray, once per process.

Part of the composition root (:mod:`twin.wiring`): only it turns ``Settings`` into adapters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.settings import Settings

if TYPE_CHECKING:
    pass


def ensure_ray(settings: Settings) -> None:
    """Join the configured Ray cluster, or start a local Ray once per process."""
    from twin.adapters.ray_runtime import ensure_ray as start

    start(settings.ray.address, settings.ray.num_cpus)


def ray_is_local(settings: Settings) -> bool:
    """True when this process started its own Ray (its resources are this machine's)."""
    return not settings.ray.address
