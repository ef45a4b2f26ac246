"""The parts of a TwinProfile only a cluster reads: Secret references, placement, the retraining policy.

The ``twin`` CLI on one machine accepts and ignores them; the operator turns them into pod fields.
They live here, beside :mod:`twin.domain.profile`, to keep each module small. Every constraint is
declared once on the model: pydantic enforces it locally, and :mod:`twin.domain.crd` renders it
into the CRD's schema, with the ``x-kubernetes-validations`` (CEL) rules attached here through
``json_schema_extra`` for what a JSON schema cannot say.

Secrets are never values in a spec: a field that needs one takes a :class:`SecretRef` (an
object), so an inline string where a reference belongs is a type error, on the API server too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """The base of every spec model: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# A Kubernetes object name (DNS-1123 subdomain): what a Secret may be called.
DNS_SUBDOMAIN = f"^{_SUBDOMAIN}$"
# A label key: an optional DNS-subdomain prefix and a name of at most 63 characters.
LABEL_KEY = "^(" + _SUBDOMAIN + "/)?" + r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
# A label value: empty, or at most 63 alphanumerics, '-', '_' and '.', alphanumeric at both ends.
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# A key of a Secret's data.
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# Five whitespace-separated cron fields (minute hour day-of-month month day-of-week), the form a
# CronJob takes; the same pattern is the pydantic check and the CEL rule, so both say the same.
CRON = r"^\s*[-0-9A-Za-z*/,?]+(\s+[-0-9A-Za-z*/,?]+){4}\s*$"
CRON_MESSAGE = "must be a five-field cron expression (minute hour day-of-month month day-of-week)"

# Source URL rules the API server enforces (CEL), because the crawler runs inside the cluster: only
# http(s), no credentials in the URL, and no host the cluster itself answers on. The local CLI does
# not apply them (its demo crawls fixture sites on 127.0.0.1); the crawler's address guard still
# refuses private targets at fetch time, after DNS. Besides what ip() flags itself (loopback,
# link-local, multicast, unspecified), these networks are refused as literal hosts: "this network",
# private, CGNAT, unique-local IPv6 and NAT64 (which reaches IPv4 through a prefix).
BLOCKED_NETWORKS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "64:ff9b::/96",
)
# A query parameter whose name says it carries a credential: such a URL is a secret pasted into the
# spec. Matched on the raw URL (a regex is cheap for the API server's CEL cost budget; a parsed
# query map is not).
CREDENTIAL_QUERY = (
    r"(?i)[?&]([^=&#]*(token|secret|passw|pwd|api[-_]?key|access[-_]?key|private[-_]?key|credential|"
    r"signature|session)[^=&#]*|key|sig|auth|authorization)([=&#]|$)"
)
# The URL's host, cut out of the string with regexes: the authority after "//", past any userinfo,
# without the port, without IPv6 brackets. url(self).getHostname() says the same, but the API
# server's CEL cost estimate cannot bound the size of what it returns, and refuses the CRD; a
# substring found in a bounded string is bounded.
_HOST = r"self.find(r'//[^/?#]*').find(r'[^@/]*$').find(r'^\[[^\]]*\]|^[^:]*').find(r'[^\[\]]+')"
_NETWORKS = ", ".join(f"'{n}'" for n in BLOCKED_NETWORKS)
SOURCE_URL_RULES: list[Any] = [
    {
        "rule": "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",
        "message": "url must be an absolute http:// or https:// URL with a host",
    },
    {
        "rule": r"!self.matches(r'^[A-Za-z][-A-Za-z0-9+.]*://[^/?#]*@')",
        "message": "url must not embed credentials (user:password@host): use credentialsSecretRef",
    },
    {
        "rule": f"!self.matches(r'{CREDENTIAL_QUERY}')",
        "message": "url must not carry a credential in its query (token, key, password, secret...): "
        "use credentialsSecretRef",
    },
    # [host].all(h, ...) names the host once (CRD rules have no cel.bind): one cut, not one per use.
    {
        "rule": f"!isURL(self) || [{_HOST}.lowerAscii()].all(h, !h.matches(r'(^|\\.)localhost\\.?$'))",
        "message": "url's host must not be localhost (the crawler runs inside the cluster)",
    },
    {
        "rule": f"!isURL(self) || [{_HOST}].all(h, !isIP(h) || ip(h).isGlobalUnicast())",
        "message": "url's host must not be a loopback, link-local, multicast or unspecified address (the "
        "crawler runs inside the cluster)",
    },
    {
        "rule": f"!isURL(self) || [{_HOST}].all(h, "
        f"!isIP(h) || ![{_NETWORKS}].exists(n, cidr(n).containsIP(h)))",
        "message": "url's host must not be a private or CGNAT address (the crawler runs inside the cluster)",
    },
    {
        # 2130706433, 0x7f.1, 127.1 or 127.000.000.001 reach 127.0.0.1 through most resolvers.
        "rule": f"!isURL(self) || [{_HOST}.lowerAscii()].all(h, isIP(h) || "
        "!h.matches(r'[:%]|(^|\\.)(0x[0-9a-f]*|[0-9]+)\\.?$'))",
        "message": "url's host must be a DNS name or an IP address in canonical form",
    },
]

LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317, pattern=LABEL_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
GpuType = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=LABEL_VALUE)]


def cron_rule() -> dict[str, Any]:
    """The CEL rule for a cron string field (the CRD's side of :func:`check_cron`)."""
    return {"x-kubernetes-validations": [{"rule": f"self.matches(r'{CRON}')", "message": CRON_MESSAGE}]}


def check_cron(value: str | None) -> str | None:
    """The pydantic side of :func:`cron_rule`: a cron string has exactly five fields."""
    if value is not None and not re.match(CRON, value):
        raise ValueError(f"schedule {value!r} {CRON_MESSAGE}")
    return value


class SecretRef(SpecModel):
    """A Secret in the profile's namespace: how a spec names a credential without holding it."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="The Secret's name.")
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DATA_KEY,
        description="One key of the Secret, where a single value is read; unset: the whole Secret.",
    )


class ApiKeysSecretRef(SecretRef):
    """The Secret holding the endpoint's API keys, mounted as a file the server reads."""

    key: str = Field(
        default="api-keys",
        min_length=1,
        max_length=253,
        pattern=DATA_KEY,
        description="The Secret's key whose value is the API keys file (one key per line).",
    )


class Toleration(SpecModel):
    """A pod toleration, as in a PodSpec: lets the pods run on tainted (e.g. GPU) nodes."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.key) || self.operator == 'Exists'",
                    "message": "operator must be Exists when key is empty",
                },
                {
                    "rule": "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "message": "value must be empty when operator is Exists",
                },
            ]
        }
    )

    key: LabelKey | None = Field(default=None, description="The taint key; unset: tolerate every taint.")
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="Equal: the taint's value must be value; Exists: any value."
    )
    value: LabelValue | None = Field(default=None, description="The taint value (with operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect tolerated; unset: every effect."
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="With effect NoExecute: how long the pod stays once tainted; unset: forever.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.key is None and self.operator != "Exists":
            raise ValueError("operator must be Exists when key is empty")
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        return self


class Placement(SpecModel):
    """Where the pods of a workload run: a GPU product, node labels and taints tolerated."""

    gpu_type: GpuType | None = Field(
        default=None,
        description="The GPU product the pods need, as the NVIDIA GPU feature discovery labels nodes "
        "(nvidia.com/gpu.product, e.g. NVIDIA-A100-SXM4-80GB); unset: any GPU.",
    )
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Node labels the pods require, as a PodSpec's nodeSelector.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=20, description="Taints the pods tolerate (GPU node pools)."
    )


class RetrainingSpec(SpecModel):
    """When the operator starts a new training run for the profile."""

    min_changed_documents: int = Field(
        default=5,
        ge=1,
        le=1_000_000,
        description="Documents new, changed or deleted since the champion's dataset before a new run "
        "starts (the first run needs none).",
    )
    schedule: str | None = Field(
        default=None,
        max_length=100,
        json_schema_extra=cron_rule(),
        description="A five-field cron expression: a new run starts only at or after the first "
        "scheduled time following the last run's start; unset: as soon as enough documents changed.",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return check_cron(value)


__all__ = [
    "BLOCKED_NETWORKS",
    "CRON",
    "SOURCE_URL_RULES",
    "ApiKeysSecretRef",
    "LabelKey",
    "LabelValue",
    "Placement",
    "RetrainingSpec",
    "SecretRef",
    "SpecModel",
    "Toleration",
    "check_cron",
    "cron_rule",
]
