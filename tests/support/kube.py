"""A real Kubernetes control plane for the operator tests: etcd + kube-apiserver (+ the KubeRay
operator on demand), built from the Go module proxy by ``scripts/fetch-kube.sh`` and started here on
free ports, envtest-style.

There is no kubelet, scheduler or controller-manager: Pods stay Pending, Deployments stay 0/N,
nothing garbage-collects ownerReferences and namespaces get no ``default`` ServiceAccount. What it
does prove is everything the API server itself decides: schemas and CEL rules, server-side apply,
RBAC (a process run with :meth:`ControlPlane.service_account_kubeconfig` has exactly that
ServiceAccount's permissions), admission, and what KubeRay's real controller makes of our objects.

Certificates come from :mod:`support.kube_pki` (``cryptography``, no openssl CLI); every process
logs to a file in the control plane's folder, and :meth:`ControlPlane.log_tails` shows their last
lines when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from support.kube_pki import Pki, b64, make_pki, write_kubeconfig
from support.processes import descendants, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/bin/kubectl"
SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"


def fetch_binaries() -> Path:
    """The cached control-plane folder (bin/, crds/, versions.env); builds it on a cold machine
    (about 20 minutes) and waits on the build lock if another session is building it."""
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch-kube.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/fetch-kube.sh failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


# --- processes --------------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A long-running process of the control plane (or a test's own, e.g. the operator), its output
    in ``log``; stopped with its whole tree at teardown."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL of the process and everything it started if it does not exit."""
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        for pid in [*tree, self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.proc.wait(10)


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver, an admin kubeconfig and helpers to drive them.

    ``root`` holds the certificates, the etcd data, kubeconfigs and one ``<name>.log`` per process.
    """

    root: Path
    binaries: Path  # bin/{etcd,kube-apiserver,helm,kuberay-operator}, crds/, versions.env
    server: str  # https://127.0.0.1:<port>
    kubeconfig: Path  # admin (system:masters), certificate auth
    pki: Pki
    versions: dict[str, str]
    processes: list[ManagedProcess] = field(default_factory=list)
    kuberay: ManagedProcess | None = None

    @property
    def bin(self) -> Path:
        return self.binaries / "bin"

    @property
    def kuberay_crds(self) -> list[Path]:
        return sorted((self.binaries / "crds").glob("ray.io_*.yaml"))

    @property
    def kube_version(self) -> str:
        """The pinned Kubernetes version, e.g. ``v1.34.4`` (for ``helm template --kube-version``)."""
        return self.versions["K8S_VERSION"]

    # --- clients --------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS`` as admin (or with ``kubeconfig``); raises with stderr when ``check``."""
        cmd = [KUBECTL, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        out = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise AssertionError(_failure("kubectl", args, out))
        return out

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> dict[str, object]:
        """``kubectl ARGS -o json``, parsed."""
        out = self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig)
        parsed: dict[str, object] = json.loads(out.stdout)
        return parsed

    def apply(self, manifest: str | Mapping[str, object], *args: str) -> subprocess.CompletedProcess[str]:
        """Server-side apply of a manifest (YAML text or one object) as admin."""
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(dict(manifest))
        return self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *args, input=text)

    def helm_env(self) -> dict[str, str]:
        home = self.root / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The built helm with the admin kubeconfig and its caches inside ``root``."""
        cmd = [str(self.bin / "helm"), *args]
        out = subprocess.run(
            cmd, env=self.helm_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and out.returncode != 0:
            raise AssertionError(_failure("helm", args, out))
        return out

    # --- processes ------------------------------------------------------------------------------

    def start_process(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> ManagedProcess:
        """Start ``argv`` with ``env`` on top of this environment, output to ``root/<name>-<id>.log``;
        teardown stops it (and its children) with the control plane. Use it for the operator too,
        so its log tail shows when a test fails."""
        log = self.root / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                list(argv),
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd or self.root,
                start_new_session=True,
            )
        managed = ManagedProcess(name, proc, log)
        self.processes.append(managed)
        return managed

    def log_tails(self, chars: int = 3000) -> str:
        """The last lines of every process's log, newest processes last."""
        parts = []
        for p in self.processes:
            state = "running" if p.running() else f"exited {p.proc.returncode}"
            parts.append(f"----- {p.name} ({state}) {p.log} -----\n{p.tail(chars)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every process, the most recently started first (clients before the API server)."""
        errors = []
        for p in reversed(self.processes):
            try:
                p.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{p.name}: {exc!r}")
        if errors:
            raise RuntimeError("could not stop: " + "; ".join(errors))

    # --- KubeRay --------------------------------------------------------------------------------

    def install_kuberay(self) -> ManagedProcess:
        """KubeRay's own CRDs (server-side: they exceed client-side apply's annotation limit) and
        the KubeRay operator running against this API server. Idempotent within a session."""
        if self.kuberay is not None and self.kuberay.running():
            return self.kuberay
        for crd in self.kuberay_crds:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        names = [c.name.removeprefix("ray.io_").removesuffix(".yaml") for c in self.kuberay_crds]
        self.wait_established(*(f"{n}.ray.io" for n in names))
        metrics, probe = free_port(), free_port()
        self.kuberay = self.start_process(
            "kuberay-operator",
            [
                str(self.bin / "kuberay-operator"),
                "--enable-leader-election=false",
                f"--metrics-addr=127.0.0.1:{metrics}",
                f"--health-probe-bind-address=127.0.0.1:{probe}",
                "--log-stdout-encoder=console",
            ],
            env={"KUBECONFIG": str(self.kubeconfig)},
        )
        wait_for(
            lambda: _http_ok(f"http://127.0.0.1:{probe}/readyz") or not self.kuberay_running(),
            timeout=120,
            what="the KubeRay operator's /readyz",
        )
        if not self.kuberay_running():
            raise AssertionError(f"the KubeRay operator exited:\n{self.kuberay.tail()}")
        return self.kuberay

    def kuberay_running(self) -> bool:
        return self.kuberay is not None and self.kuberay.running()

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until each CRD (``plural.group``) is Established; ``kubectl wait`` errors right after
        an apply (the object is not there to watch yet), so it is retried."""
        for crd in crds:

            def established(name: str = crd) -> bool:
                out = self.kubectl(
                    "wait", "--for=condition=Established", f"crd/{name}", "--timeout=10s", check=False
                )
                return out.returncode == 0

            wait_for(established, timeout=timeout, what=f"CRD {crd} Established")

    # --- identities -----------------------------------------------------------------------------

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, create: bool = False, duration: str = "24h"
    ) -> Path:
        """A kubeconfig that authenticates as ``system:serviceaccount:<namespace>:<name>`` with a
        bound token from the TokenRequest API (served by the API server itself), so a process run
        with it has exactly that ServiceAccount's RBAC. The ServiceAccount must exist (the chart
        makes it) unless ``create``."""
        if create:
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": namespace},
                }
            )
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout
        path = self.root / f"kubeconfig-{namespace}-{name}"
        return write_kubeconfig(
            path, self.server, self.pki.ca_cert, f"{namespace}-{name}", {"token": token.strip()}
        )

    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        return name


def _failure(tool: str, args: Sequence[str], out: subprocess.CompletedProcess[str]) -> str:
    return f"{tool} {' '.join(args)} failed ({out.returncode}):\n{out.stderr}\n{out.stdout}"


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def admin_ssl_context(pki: Pki) -> ssl.SSLContext:
    """TLS as the admin user, trusting only the test CA."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


def _read_versions(binaries: Path) -> dict[str, str]:
    lines = (binaries / "versions.env").read_text().splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in lines if "=" in line)}


def _start_etcd(plane: ControlPlane) -> str:
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    etcd = plane.start_process(
        "etcd",
        [
            str(plane.bin / "etcd"),
            "--name=test",
            f"--data-dir={plane.root / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    wait_for(lambda: _http_ok(f"{url}/health") or not etcd.running(), timeout=60, what="etcd /health")
    if not etcd.running():
        raise AssertionError(f"etcd exited:\n{etcd.tail()}")
    return url


def _start_apiserver(plane: ControlPlane, etcd_url: str, port: int) -> None:
    pki = plane.pki
    apiserver = plane.start_process(
        "kube-apiserver",
        [
            str(plane.bin / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki.sa_public}",
            f"--service-account-signing-key-file={pki.sa_private}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            # The `kubernetes` Service cannot point at a loopback address: do not try every 10 s.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={plane.root / 'apiserver-certs'}",
            "--v=1",
        ],
    )
    context = admin_ssl_context(pki)
    wait_for(
        lambda: _http_ok(f"{plane.server}/readyz", context) or not apiserver.running(),
        timeout=180,
        what="kube-apiserver /readyz",
    )
    if not apiserver.running():
        raise AssertionError(f"kube-apiserver exited:\n{apiserver.tail()}")


@contextlib.contextmanager
def control_plane(root: Path, binaries: Path | None = None) -> Iterator[ControlPlane]:
    """Start etcd and kube-apiserver under ``root`` and stop everything started through the plane
    (the KubeRay operator and any test process included) on exit."""
    binaries = binaries or fetch_binaries()
    root.mkdir(parents=True, exist_ok=True)
    pki = make_pki(root / "pki")
    port = free_port()
    server = f"https://127.0.0.1:{port}"
    kubeconfig = write_kubeconfig(
        root / "kubeconfig-admin",
        server,
        pki.ca_cert,
        "admin",
        {"client-certificate-data": b64(pki.admin_cert), "client-key-data": b64(pki.admin_key)},
    )
    plane = ControlPlane(root, binaries, server, kubeconfig, pki, _read_versions(binaries))
    try:
        _start_apiserver(plane, _start_etcd(plane), port)
        yield plane
    finally:
        plane.stop()
