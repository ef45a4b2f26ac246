"""A thin, synchronous REST client for the handful of resources the operator reads and writes.

Built on the official ``kubernetes`` client's connection handling (kubeconfig or in-cluster
credentials, TLS, token refresh) but not on its generated models: every object here is a plain
dict, exactly what ``reconcile`` returns and what server-side apply takes. The kinds are listed in
:data:`KINDS` (no discovery round-trips; a kind whose CRD is absent answers 404, which callers
treat as "not installed"). Every call is what the chart's ClusterRole grants; a 403 surfaces as a
:class:`KubeError` naming the verb and the path, so missing RBAC is visible rather than silent.

kopf runs sync handlers in its thread pool: one :class:`Kube` is shared by all of them (the
underlying urllib3 pool is thread-safe).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from twin_operator.model import FIELD_MANAGER


@dataclass(frozen=True)
class Kind:
    """One resource type: its apiVersion, kind and plural (the URL path segment)."""

    api_version: str
    kind: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if namespace is not None:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


_ALL = (
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "Service", "services"),
    Kind("batch/v1", "Job", "jobs"),
    Kind("batch/v1", "CronJob", "cronjobs"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("ray.io/v1", "RayJob", "rayjobs"),
    Kind("ray.io/v1", "RayService", "rayservices"),
    Kind("llmtwin.dev/v1alpha1", "TwinProfile", "twinprofiles"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions"),
)
KINDS: dict[str, Kind] = {k.kind: k for k in _ALL}
# What the operator creates per profile, so what it prunes (in this order: writers of data first).
CHILD_KINDS = ("CronJob", "Job", "RayJob", "RayService", "Service", "NetworkPolicy", "ConfigMap")
RAY_KINDS = ("RayJob", "RayService")


def kind_of(obj: Mapping[str, Any]) -> Kind:
    """The :class:`Kind` of an object; an unknown one is a programming error (reconcile made it)."""
    kind = KINDS.get(str(obj.get("kind")))
    if kind is None or kind.api_version != obj.get("apiVersion"):
        raise ValueError(f"the operator does not manage {obj.get('apiVersion')}/{obj.get('kind')}")
    return kind


class KubeError(Exception):
    """A non-2xx answer of the API server."""

    def __init__(self, method: str, path: str, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", "")) or f"HTTP {status}"
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}")


class Kube:
    """The operator's calls to the API server (see the module docstring)."""

    def __init__(
        self, api_client: Any, *, field_manager: str = FIELD_MANAGER, timeout_s: float = 30.0
    ) -> None:
        self._api = api_client
        self.field_manager = field_manager
        self._timeout = timeout_s

    @classmethod
    def from_environment(cls, *, field_manager: str = FIELD_MANAGER, timeout_s: float = 30.0) -> Kube:
        """Credentials from ``KUBECONFIG`` (or ~/.kube/config), else the pod's service account."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(client.ApiClient(configuration), field_manager=field_manager, timeout_s=timeout_s)

    # ------------------------------------------------------------------------------- transport

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        m, url, h, b, post = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(
            m, url, header_params=h, body=b, post_params=post, _request_timeout=self._timeout
        )
        raw = response.read()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"message": raw[:500].decode(errors="replace") if isinstance(raw, bytes) else str(raw)}
        if not 200 <= int(response.status) < 300:
            raise KubeError(method, path, int(response.status), parsed if isinstance(parsed, dict) else {})
        return parsed if isinstance(parsed, dict) else {}

    # ---------------------------------------------------------------------------------- verbs

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it (or its kind) does not exist."""
        try:
            return self.request("GET", KINDS[kind].path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` (None: all) matching ``labels`` and ``fields``."""
        return list(self._pages(kind, namespace, labels or {}, fields or {}))

    def _pages(
        self, kind: str, namespace: str | None, labels: Mapping[str, str], fields: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        query = [("limit", "500")]
        if labels:
            query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(labels.items()))))
        if fields:
            query.append(("fieldSelector", ",".join(f"{k}={v}" for k, v in sorted(fields.items()))))
        token = None
        while True:
            page = self.request(
                "GET", KINDS[kind].path(namespace), query=[*query, *([("continue", token)] if token else [])]
            )
            for item in page.get("items") or []:
                yield {"apiVersion": KINDS[kind].api_version, "kind": kind, **item}
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def apply(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        """Server-side apply with the operator's field manager, taking over conflicting fields
        (``force``): the operator is the authority on what it owns, so drift is repaired."""
        meta = obj["metadata"]
        path = kind_of(obj).path(meta.get("namespace"), meta["name"], subresource)
        return self.request(
            "PATCH",
            path,
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete in the background (dependents follow through the garbage collector); with ``uid``
        only that incarnation (a precondition). False when it was already gone."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", KINDS[kind].path(namespace, name), body=body)
        except KubeError as exc:
            if exc.status in (404, 409):  # gone, or replaced by a new object of the same name
                return False
            raise
        return True
