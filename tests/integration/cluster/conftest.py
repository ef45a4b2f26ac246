"""Fixtures of the cluster tests: one real Kubernetes control plane for this package, stopped after it.

- ``kube``: etcd + kube-apiserver on free ports (:class:`support.kube.ControlPlane`): ``kubectl``,
  ``helm``, ``apply``, ``install_kuberay``, ``service_account_kubeconfig``, ``start_process``.
- ``kuberay``: the same plane with KubeRay's CRDs installed and its operator running.
- ``installation``: the chart ``helm install``-ed (optional components off) and the real operator
  running with the chart's environment and ServiceAccount token, shared by the end-to-end modules.
- ``namespace``: a fresh namespace per test (the plane is thrown away at the end of the session;
  without a namespace controller a deleted namespace would only sit in Terminating).

When a test that used the plane fails, the tails of every process's log are added to its report.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator

import pytest

from support.kube import REPO, ControlPlane, control_plane
from support.operator_e2e import FAST, RELEASE, Installation, chart_env, start_operator
from support.processes import free_port
from twin.adapters.mlflow_store import MlflowStore


@pytest.fixture(scope="package")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with control_plane(tmp_path_factory.mktemp("kube")) as plane:
        yield plane


@pytest.fixture(scope="package")
def kuberay(kube: ControlPlane) -> ControlPlane:
    kube.install_kuberay()
    return kube


@pytest.fixture
def namespace(kube: ControlPlane) -> str:
    return kube.create_namespace()


@pytest.fixture(scope="package")
def installation(
    kuberay: ControlPlane, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    kube = kuberay
    home = tmp_path_factory.mktemp("operator-e2e")
    tracking, artifacts = f"sqlite:///{home / 'mlflow.db'}", (home / "artifacts").as_uri()
    release_ns = kube.create_namespace("twin-system")
    namespaces = (kube.create_namespace("profiles"), kube.create_namespace("profiles"))
    kube.helm(
        "install", RELEASE, str(REPO / "charts" / "twin"), "-n", release_ns,
        "--set", f"fullnameOverride={RELEASE}",
        "--set", "postgres.enabled=false,kafka.enabled=false,connect.enabled=false,mlflow.enabled=false",
        "--set", "features.enabled=true",
        "--set-string", f"external.database.dsn={pg_dsn}",
        "--set-string", f"external.mlflow.trackingUri={tracking}",
        "--set-string", "external.kafka.bootstrapServers=127.0.0.1:9",
        "--set-string", f"settings.env.TWIN_TRAINING__MLFLOW_ARTIFACT_ROOT={artifacts}",
        "--set-json", f"profileNamespaces={json.dumps(list(namespaces))}",
    )  # fmt: skip
    kube.wait_established("twinprofiles.llmtwin.dev")
    env = chart_env(kube, release_ns)
    assert env["TWIN_DATABASE__DSN"] == pg_dsn and env["TWIN_TRAINING__MLFLOW_TRACKING_URI"] == tracking
    assert json.loads(env["TWIN_OPERATOR_FEATURES_DEPLOYMENTS"]) == [f"{release_ns}/{RELEASE}-features"]
    service_account = kube.kubectl_json("get", "deployment", f"{RELEASE}-operator", "-n", release_ns)
    sa_name = service_account["spec"]["template"]["spec"]["serviceAccountName"]  # type: ignore[index]
    env |= {
        **FAST,
        "KUBECONFIG": str(kube.service_account_kubeconfig(release_ns, sa_name)),
        "TWIN_OPERATOR_NAMESPACES": json.dumps(list(namespaces)),
        "TWIN_HOME": str(home / "twin"),
        "HOME": str(home),
    }
    metrics_port = free_port()
    operator = start_operator(kube, env, metrics_port=metrics_port)
    registry = MlflowStore(tracking, artifacts)
    yield Installation(kube, pg_dsn, registry, release_ns, namespaces, env, operator, metrics_port)
    assert operator.running(), f"the operator exited:\n{operator.tail()}"  # never a crash, whatever happened
    operator.stop()
    kube.helm("uninstall", RELEASE, "-n", release_ns)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    plane = getattr(item, "funcargs", {}).get("kube") or getattr(item, "funcargs", {}).get("kuberay")
    if report.failed and isinstance(plane, ControlPlane):
        report.sections.append(("control plane logs", plane.log_tails()))
    return report
