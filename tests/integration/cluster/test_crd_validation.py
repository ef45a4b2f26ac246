"""The TwinProfile CRD on a real kube-apiserver: the committed CRD installs, the cluster sample is
accepted under kubectl's strict field validation, the API server's defaults are the models', the
status subresource and printer columns work, and hostile specs are refused with a message naming
the field. Each refusal is checked against the pydantic model too, so the two cannot drift apart
except where the CRD is meant to be stricter (cluster-internal URLs, credentials in URLs)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from support.kube import ControlPlane
from support.processes import wait_for
from twin.cli.crd import CRD_FILES, ROOT
from twin.domain.crd import CRD_NAME
from twin.domain.errors import InvalidSpec
from twin.domain.profile import TwinProfileSpec, parse_profile
from twin.domain.profile_status import CONDITION_TYPES, TwinProfileStatus

SAMPLES = ROOT / "manifests" / "samples"
MINIMAL: dict[str, Any] = {
    "apiVersion": "llmtwin.dev/v1alpha1",
    "kind": "TwinProfile",
    "metadata": {"name": "hostile"},
    "spec": {"owner": {"displayName": "Mallory"}, "sources": [{"url": "https://example.com/mallory"}]},
}


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text(encoding="utf-8"))
    return data


def _dry_run(kube: ControlPlane, namespace: str, obj: dict[str, Any], *extra: str) -> Any:
    # kubectl's default --validate=strict makes unknown fields errors, as a user's `kubectl apply` does.
    return kube.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", *extra, input=json.dumps(obj), check=False
    )


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> ControlPlane:
    """The committed CRD (what `kubectl apply -f manifests/crds/` installs), Established and serving."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / CRD_FILES[0]))
    kube.wait_established(CRD_NAME)
    return kube


@pytest.fixture(scope="module")
def dry(crd: ControlPlane) -> str:
    """One namespace for every server-side dry run (they store nothing)."""
    namespace = crd.create_namespace("crd")
    # Right after Established the first requests may get 429 "storage is (re)initializing".
    wait_for(
        lambda: _dry_run(crd, namespace, MINIMAL).returncode == 0, timeout=60, what="TwinProfiles served"
    )
    return namespace


def test_the_cluster_sample_is_accepted(crd: ControlPlane, dry: str) -> None:
    sample = _sample("twinprofile-cluster.yaml")
    out = _dry_run(crd, dry, sample)
    assert out.returncode == 0, out.stderr
    parse_profile(sample)  # and by the model


def test_the_api_servers_defaults_are_the_models(crd: ControlPlane, dry: str) -> None:
    for obj in (MINIMAL, _sample("twinprofile-cluster.yaml")):
        out = _dry_run(crd, dry, obj, "-o", "json")
        assert out.returncode == 0, out.stderr
        stored = json.loads(out.stdout)["spec"]
        model = TwinProfileSpec.model_validate(obj["spec"])
        assert stored == model.model_dump(by_alias=True, mode="json", exclude_none=True)


def test_the_status_subresource_and_printer_columns(crd: ControlPlane, namespace: str) -> None:
    crd.apply({**_sample("twinprofile-cluster.yaml"), "metadata": {"name": "alice", "namespace": namespace}})
    status = TwinProfileStatus.model_validate(
        {
            "observedGeneration": 1,
            "phase": "Ready",
            "sources": 5,
            "conditions": [
                {
                    "type": kind,
                    "status": "True",
                    "reason": "Observed",
                    "message": f"{kind} observed",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-12-03T13:00:00Z",
                }
                for kind in CONDITION_TYPES
            ],
            "crawl": {"lastCrawlTime": "2026-12-03T12:00:00Z", "job": "twin-alice-crawl-1", "documents": 42},
            "dataset": {"version": "ds-1"},
            "champion": {"version": 3, "heldOut": {"perplexity": 11.5, "styleFidelity": 0.8}},
            "training": {"job": "twin-alice-train-1", "phase": "Succeeded"},
            "endpoint": f"http://twin-alice.{namespace}.svc:8000/v1",
        }
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    patch = json.dumps({"status": status})
    crd.kubectl(
        "patch", "twin", "alice", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )
    stored = crd.kubectl_json("get", "twinprofile", "alice", "-n", namespace)
    assert (
        TwinProfileStatus.model_validate(stored["status"]).model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
        == status
    )
    table = crd.kubectl("get", "twin", "-n", namespace).stdout.split("\n")
    assert table[0].split() == ["NAME", "PHASE", "SOURCES", "DOCUMENTS", "CHAMPION", "ENDPOINT", "AGE"]
    assert table[1].split()[:6] == ["alice", "Ready", "5", "42", "3", status["endpoint"]]
    # The category lists it too, and a status the schema refuses is refused.
    assert "alice" in crd.kubectl("get", "llmtwin", "-n", namespace).stdout
    bad = crd.kubectl(
        "patch",
        "twin",
        "alice",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Done"}}),
        check=False,
    )
    assert bad.returncode != 0 and "status.phase" in bad.stderr


@dataclass(frozen=True)
class Hostile:
    """A spec the API server must refuse; ``says`` are fragments of its error, the field path first.
    ``model_too``: the pydantic model refuses it as well (False where only the CRD is meant to)."""

    name: str
    mutate: Callable[[dict[str, Any]], object]
    says: tuple[str, ...]
    model_too: bool = True


def _source(url: str) -> Callable[[dict[str, Any]], object]:
    return lambda obj: obj["spec"]["sources"][0].update(url=url)


def _spec(**fields: Any) -> Callable[[dict[str, Any]], object]:
    return lambda obj: obj["spec"].update(fields)


CLUSTER_INTERNAL = "the crawler runs inside the cluster"
HOSTILE = [
    Hostile("unknown field", _spec(password="hunter2"), ('unknown field "spec.password"',)),
    Hostile(
        "unknown nested field",
        lambda o: o["spec"]["sources"][0].update(token="abc"),
        ('unknown field "spec.sources[0].token"',),
    ),
    Hostile("wrong type", _spec(training={"gpus": "two"}), ("spec.training.gpus", "must be of type integer")),
    Hostile(
        "negative replicas",
        _spec(serving={"minReplicas": -1}),
        ("spec.serving.minReplicas", "greater than or equal to 0"),
    ),
    Hostile(
        "negative gpus", _spec(training={"gpus": -2}), ("spec.training.gpus", "greater than or equal to 0")
    ),
    Hostile(
        "inverted replicas",
        _spec(serving={"minReplicas": 5, "maxReplicas": 2}),
        ("spec.serving.minReplicas", "minReplicas must be less than or equal to maxReplicas"),
    ),
    Hostile(
        "too many serving gpus",
        _spec(serving={"gpus": 17}),
        ("spec.serving.gpus", "less than or equal to 16"),
    ),
    Hostile(
        "javascript url",
        _source("javascript:alert(1)"),
        ("spec.sources[0].url", "http:// or https://"),
        False,
    ),
    Hostile("file url", _source("file:///etc/passwd"), ("spec.sources[0].url", "http:// or https://"), False),
    Hostile(
        "data url", _source("data:text/html,<b>hi</b>"), ("spec.sources[0].url", "http:// or https://"), False
    ),
    Hostile("ftp url", _source("ftp://example.com/"), ("spec.sources[0].url", "http:// or https://"), False),
    Hostile("private address", _source("http://10.0.0.5/"), ("spec.sources[0].url", "private"), False),
    Hostile("CGNAT address", _source("http://100.64.0.7/"), ("spec.sources[0].url", "CGNAT"), False),
    Hostile("loopback", _source("http://127.0.0.1:8080/"), ("spec.sources[0].url", "loopback"), False),
    Hostile(
        "cloud metadata",
        _source("http://169.254.169.254/latest/"),
        ("spec.sources[0].url", "link-local"),
        False,
    ),
    Hostile("IPv6 loopback", _source("http://[::1]/"), ("spec.sources[0].url", "loopback"), False),
    Hostile("IPv6 unique local", _source("http://[fd00::5]/"), ("spec.sources[0].url", "private"), False),
    Hostile("localhost", _source("http://LocalHost:9000/"), ("spec.sources[0].url", "localhost"), False),
    Hostile("decimal loopback", _source("http://2130706433/"), ("spec.sources[0].url", "canonical"), False),
    Hostile(
        "mapped loopback", _source("http://[::ffff:127.0.0.1]/"), ("spec.sources[0].url", "canonical"), False
    ),
    Hostile(
        "credentials in url",
        _source("https://alice:hunter2@example.com/"),
        ("spec.sources[0].url", "must not embed credentials"),
        False,
    ),
    Hostile(
        "token in url",
        _source("https://example.com/feed?token=abc123"),
        ("spec.sources[0].url", "credential in its query"),
        False,
    ),
    Hostile(
        "api key in url",
        _source("https://example.com/feed?page=2&API_KEY=abc123"),
        ("spec.sources[0].url", "credential in its query"),
        False,
    ),
    Hostile(
        "more than the maximum sources",
        _spec(sources=[{"url": f"https://example.com/{i}"} for i in range(201)]),
        ("spec.sources", "must have at most 200 items"),
    ),
    Hostile(
        "a source listed twice",
        _spec(sources=[{"url": "https://example.com/"}, {"url": "https://example.com/"}]),
        ("spec.sources[1]", "Duplicate value"),
    ),
    Hostile(
        "oversized field",
        lambda o: o["spec"]["owner"].update(displayName="x" * 201),
        ("spec.owner.displayName", "Too long"),
    ),
    Hostile(
        "oversized url",
        _source("https://example.com/" + "a" * 2100),
        ("spec.sources[0].url", "Too long"),
    ),
    Hostile(
        "inline credentials",
        _spec(credentialsSecretRef="TWIN_LINKEDIN__PASSWORD=hunter2"),
        ("spec.credentialsSecretRef", "must be of type object"),
    ),
    Hostile(
        "inline api keys",
        _spec(serving={"apiKeysSecretRef": "sk-live-abc123"}),
        ("spec.serving.apiKeysSecretRef", "must be of type object"),
    ),
    Hostile(
        "secret value beside its reference",
        _spec(credentialsSecretRef={"name": "logins", "password": "hunter2"}),
        ('unknown field "spec.credentialsSecretRef.password"',),
    ),
    Hostile(
        "four-field cron",
        _spec(crawl={"schedule": "0 3 * *"}),
        ("spec.crawl.schedule", "five-field cron"),
    ),
    Hostile(
        "retraining cron",
        _spec(training={"retraining": {"schedule": "every sunday"}}),
        ("spec.training.retraining.schedule", "five-field cron"),
    ),
    Hostile(
        "zero changed documents",
        _spec(training={"retraining": {"minChangedDocuments": 0}}),
        ("spec.training.retraining.minChangedDocuments", "greater than or equal to 1"),
    ),
    Hostile(
        "toleration with a value for Exists",
        _spec(training={"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}),
        ("spec.training.tolerations[0]", "value must be empty when operator is Exists"),
    ),
    Hostile(
        "bad node selector key",
        _spec(serving={"nodeSelector": {"no spaces please": "x"}}),
        ("spec.serving.nodeSelector", "keys must be"),
    ),
    Hostile(
        "unknown platform",
        lambda o: o["spec"]["sources"][0].update(platform="myspace"),
        ("spec.sources[0].platform", "Unsupported value"),
    ),
    Hostile("missing owner", lambda o: o["spec"].pop("owner"), ("spec.owner", "Required value")),
    Hostile(
        "name that is not a label",
        lambda o: o["metadata"].update(name="alice.moreau"),
        ("metadata.name must be a lower-case RFC 1123 label",),
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_specs_are_refused_naming_the_field(crd: ControlPlane, dry: str, case: Hostile) -> None:
    obj = copy.deepcopy(MINIMAL)
    case.mutate(obj)
    out = _dry_run(crd, dry, obj)
    assert out.returncode != 0, f"accepted: {out.stdout}"
    for fragment in case.says:
        assert fragment in out.stderr, out.stderr
    if case.model_too:
        with pytest.raises(InvalidSpec):
            parse_profile(obj)
    else:
        parse_profile(obj)  # only the cluster refuses it (the local demo crawls 127.0.0.1)


def test_the_local_demo_sample_is_refused_on_a_cluster(crd: ControlPlane, dry: str) -> None:
    # Its sources are fixture sites on 127.0.0.1: fine for `twin collect` on one machine, never
    # something a crawler inside a cluster should be pointed at.
    out = _dry_run(crd, dry, _sample("twinprofile-alice.yaml"))
    assert out.returncode != 0
    assert "spec.sources[0].url" in out.stderr and CLUSTER_INTERNAL in out.stderr
