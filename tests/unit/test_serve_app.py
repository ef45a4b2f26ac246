"""The RayService's Serve builder: the operator's serveConfigV2 names it, Ray Serve imports and calls it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve import Application

from twin.cli.serve_app import build_from_args

SAMPLE = Path(__file__).parents[2] / "manifests" / "samples" / "twinprofile-cluster.yaml"


def test_builds_the_twin_application_from_the_mounted_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWIN_HOME", str(tmp_path))
    monkeypatch.setenv("TWIN_SERVING__ENGINE", "transformers")
    monkeypatch.setenv("TWIN_SERVING__API_KEYS", '["sk-test"]')
    app = build_from_args({"profile": str(SAMPLE), "championVersion": 3, "specDigest": "abc"})
    assert isinstance(app, Application)
    gpus = yaml.safe_load(SAMPLE.read_text())["spec"]["serving"].get("gpus", 0)
    ingress = app._bound_deployment
    assert ingress.name == "ingress"
    engine = ingress.init_args[0]  # the Ingress is bound to the engine's application
    assert engine._bound_deployment.ray_actor_options["num_gpus"] == float(gpus)


def test_a_missing_profile_argument_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'profile'"):
        build_from_args({"championVersion": 1})
