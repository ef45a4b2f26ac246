"""The operator when things go wrong: an invalid spec, an unreachable store, namesake profiles.

Same installation as ``test_operator_e2e.py`` (the package's ``installation`` fixture): the real
operator under the chart's ServiceAccount against a real kube-apiserver, Postgres and MLflow.
"""

from __future__ import annotations

import json

import pytest

from support.kube import ControlPlane
from support.operator_data import store_documents, stored
from support.operator_e2e import (
    Installation,
    condition,
    exists,
    names,
    sample,
    start_operator,
    status_of,
    wait_condition,
)
from support.processes import free_port, wait_for

pytestmark = [pytest.mark.timeout(900)]


def test_a_spec_no_hardware_can_run_is_invalid_and_changes_nothing(installation: Installation) -> None:
    kube, ns = installation.kube, installation.namespaces[1]
    name = "erin"
    data = sample(name, training={"gpus": 1, "strategy": "fsdp"})
    kube.apply(data, "-n", ns)
    wait_for(lambda: status_of(kube, ns, name).get("phase") == "Invalid", timeout=60, what="phase Invalid")
    invalid = status_of(kube, ns, name)
    assert {c["reason"] for c in invalid["conditions"]} == {"InvalidSpec"}
    assert "fsdp" in condition({"status": invalid}, "ModelTrained")["message"]
    assert names(kube, "configmap", ns, name) == set() and names(kube, "job", ns, name) == set()

    # Fixing the spec is all it takes.
    kube.kubectl("patch", "twinprofile", name, "-n", ns, "--type=merge", "-p",
                 json.dumps({"spec": {"training": {"gpus": 2}}}))  # fmt: skip
    wait_for(lambda: bool(names(kube, "configmap", ns, name)), timeout=60, what="children after the fix")
    wait_for(lambda: status_of(kube, ns, name).get("phase") != "Invalid", timeout=60, what="a valid phase")


def test_an_unreachable_store_is_a_condition_and_a_retry_not_a_crash(installation: Installation) -> None:
    kube = installation.kube
    ns = kube.create_namespace("unreachable")
    env = {
        **installation.env,
        "TWIN_DATABASE__DSN": f"postgresql://postgres@127.0.0.1:{free_port()}/twin",
        "TWIN_DATABASE__CONNECT_TIMEOUT_S": "1",
        "TWIN_OPERATOR_NAMESPACES": json.dumps([ns]),
    }
    operator = start_operator(kube, env, "twin-operator-no-postgres")
    try:
        name = "frank"
        kube.apply(sample(name), "-n", ns)
        status = wait_condition(kube, ns, name, "FeaturesReady", "Unknown")["status"]
        features = condition({"status": status}, "FeaturesReady")
        assert features["reason"] == "StoreUnreachable" and "Postgres" in features["message"]
        assert status["phase"] == "Degraded"
        # The cluster side is still reconciled, and the operator keeps running.
        wait_for(lambda: exists(kube, "configmap", ns, f"twin-{name}-profile"), timeout=60, what="its cm")
        assert operator.running()
    finally:
        operator.stop()


def events(kube: ControlPlane, namespace: str, name: str) -> set[str]:
    selector = f"involvedObject.name={name}"
    out = kube.kubectl_json("get", "events", "-n", namespace, "--field-selector", selector)
    return {e["reason"] for e in out["items"]}  # type: ignore[union-attr]


def test_profiles_of_one_name_share_their_data_so_it_goes_with_the_last_of_them(
    installation: Installation,
) -> None:
    """The stores key a profile's data by its name: deleting one of two namesakes (in two
    namespaces) keeps the data the other one still uses; deleting the last one purges it."""
    kube, dsn = installation.kube, installation.dsn
    first, second = installation.namespaces
    name = "gina"
    for ns in (first, second):
        kube.apply(sample(name), "-n", ns)
    store_documents(dsn, name, 4)
    for ns in (first, second):
        wait_for(lambda ns=ns: bool(status_of(kube, ns, name)), timeout=60, what=f"{ns}/{name} reconciled")

    kube.kubectl("delete", "twinprofile", name, "-n", first, "--wait=false")
    wait_for(lambda: not exists(kube, "twinprofile", first, name), timeout=60, what="the first to be gone")
    assert stored(dsn, name).documents == 4
    wait_for(lambda: "DataKept" in events(kube, first, name), timeout=30, what="a DataKept event")

    kube.kubectl("delete", "twinprofile", name, "-n", second, "--wait=false")
    wait_for(lambda: not exists(kube, "twinprofile", second, name), timeout=60, what="the second to be gone")
    assert stored(dsn, name).empty
    wait_for(lambda: "DataPurged" in events(kube, second, name), timeout=30, what="a DataPurged event")
