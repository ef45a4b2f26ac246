"""The Ray Serve application builder a cluster's RayService names in its ``serveConfigV2``.

On a cluster nobody runs ``twin serve``: KubeRay starts the Ray cluster and Ray Serve imports
``twin.cli.serve_app:build_from_args`` with the arguments the operator wrote (the profile file mounted
from its ConfigMap, the champion version and a digest of the serving spec). It lives beside the CLI
because it is an entry point too: it reads the settings from the pod's environment and builds the
ports through the composition root, as ``twin serve`` does, then binds the same application.

The champion and spec digest arguments change when the operator wants Serve to redeploy; the
application itself finds the champion in the registry (and hot-swaps on promotion), so they are not
read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twin.cli.common import load_profile, load_settings


def build_from_args(args: dict[str, Any]) -> Any:
    """The bound Serve application for the profile file at ``args["profile"]``.

    ``spec.serving.gpus`` (what the operator gave each Ray worker) becomes the engine replica's GPU
    request, so Serve places one engine per worker's GPUs instead of the settings' default.
    """
    from twin import wiring
    from twin.serving.app import build_app

    if not isinstance(args.get("profile"), str):
        raise ValueError("serveConfigV2 args need 'profile': the path of the mounted TwinProfile file")
    settings = load_settings()
    profile = load_profile(Path(args["profile"]))
    gpus = profile.spec.serving.gpus
    if gpus:
        settings = settings.model_copy(
            update={"serving": settings.serving.model_copy(update={"engine_gpus": float(gpus)})}
        )
    wiring.validate_serving(settings, profile)
    return build_app(profile, settings.serving, wiring.serving_deps(settings, profile))
