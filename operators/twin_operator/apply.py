"""Apply a :class:`~twin_operator.model.Desired`: children by server-side apply, pruning, the status.

- each child is server-side applied with the field manager ``twin-operator`` and ``force``, in the
  order ``reconcile`` listed them (the NetworkPolicy exists before any crawl pod can start), so a
  field someone edited by hand is taken back (drift repair) and fields the operator stopped setting
  are removed;
- pruning deletes every object of the child kinds that is labelled for the profile, has the
  profile (this uid) as its controller, and is neither desired nor retained. Objects other
  controllers made (the CronJob's Jobs, KubeRay's RayClusters) are theirs to clean up;
- the status goes to the status subresource, also by server-side apply, so a condition or field
  reconcile no longer reports disappears instead of lingering.

One failing child does not stop the others or the status; the failures are raised together at the
end (:class:`ApplyError`), so the handler retries and the log names each one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twin.domain.profile import API_VERSION, KIND
from twin_operator.kube import CHILD_KINDS, RAY_KINDS, Kube, KubeError
from twin_operator.model import MANAGED_BY, MANAGER, PROFILE_LABEL, Desired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileRef:
    namespace: str
    name: str
    uid: str


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class ApplyError(Exception):
    """Some children could not be applied or pruned (each failure is in the message)."""


def apply_desired(
    kube: Kube, profile: ProfileRef, desired: Desired, *, kuberay_installed: bool = True
) -> ApplyReport:
    """Children, pruning, then the status; raises :class:`ApplyError` after doing all it could."""
    report = ApplyReport()
    if desired.prune:
        for child in desired.children:
            label = f"{child.get('kind')}/{child['metadata']['name']}"
            try:
                kube.apply(child)
                report.applied.append(label)
            except KubeError as exc:
                report.failures.append(f"apply {label}: {exc.status} {exc.reason}: {exc.message}")
        keep = {(str(c["kind"]), str(c["metadata"]["name"])) for c in desired.children} | set(desired.retain)
        prune(kube, profile, keep, report, kuberay_installed=kuberay_installed)
    patch_status(kube, profile, desired.status)
    if report.failures:
        raise ApplyError("; ".join(report.failures))
    return report


def prune(
    kube: Kube,
    profile: ProfileRef,
    keep: Iterable[tuple[str, str]],
    report: ApplyReport | None = None,
    *,
    kuberay_installed: bool = True,
) -> ApplyReport:
    """Delete the profile's owned children that are not in ``keep`` (empty: all of them)."""
    report = report or ApplyReport()
    wanted = set(keep)
    selector = {MANAGED_BY: MANAGER, PROFILE_LABEL: profile.name}
    for kind in CHILD_KINDS:
        if kind in RAY_KINDS and not kuberay_installed:
            continue
        try:
            found = kube.list(kind, profile.namespace, labels=selector)
        except KubeError as exc:
            if exc.status == 404 and kind in RAY_KINDS:
                continue
            report.failures.append(f"list {kind}: {exc.status} {exc.reason}: {exc.message}")
            continue
        for obj in found:
            meta = obj.get("metadata") or {}
            name = str(meta.get("name"))
            if (kind, name) in wanted or not _controlled_by(meta, profile.uid):
                continue
            try:
                if kube.delete(kind, profile.namespace, name, uid=meta.get("uid")):
                    report.pruned.append(f"{kind}/{name}")
                    log.info("pruned %s/%s of profile %s/%s", kind, name, profile.namespace, profile.name)
            except KubeError as exc:
                report.failures.append(f"delete {kind}/{name}: {exc.status} {exc.reason}: {exc.message}")
    return report


def _controlled_by(meta: Mapping[str, Any], uid: str) -> bool:
    return any(r.get("controller") and r.get("uid") == uid for r in meta.get("ownerReferences") or [])


def patch_status(kube: Kube, profile: ProfileRef, status: Mapping[str, Any]) -> None:
    """Server-side apply of the status subresource (the main resource ignores status writes)."""
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": profile.name, "namespace": profile.namespace, "uid": profile.uid},
            "status": dict(status),
        },
        subresource="status",
    )
