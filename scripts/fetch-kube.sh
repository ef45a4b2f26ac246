#!/usr/bin/env bash
# Build the Kubernetes control plane the operator tests run against, from the Go module proxy, cached
# by version under ~/.cache/llm-twin/kube/<key>/:
#   bin/etcd  bin/kube-apiserver  bin/helm  bin/kuberay-operator   (stripped, CGO off)
#   crds/ray.io_{rayclusters,rayjobs,rayservices}.yaml             KubeRay's own CRDs
# Go's module and build caches live under ~/.cache/llm-twin/go, so a rebuilt folder costs minutes, not
# a download. A cold machine pays about 20 minutes of builds on two cores (INFRA.md has the timings);
# a warm run only checks the .complete stamp. Prints the folder, one line, on stdout.
# Versions are pinned here and nowhere else; tests read them from the folder's versions.env.
set -euo pipefail

ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
K8S_VERSION=${K8S_VERSION:-v1.34.4}
HELM_VERSION=${HELM_VERSION:-v4.3.2}
KUBERAY_VERSION=${KUBERAY_VERSION:-v1.5.0}

CACHE=${LLM_TWIN_CACHE:-$HOME/.cache/llm-twin}
KEY=etcd-$ETCD_VERSION-k8s-$K8S_VERSION-helm-$HELM_VERSION-kuberay-$KUBERAY_VERSION
DEST=$CACHE/kube/$KEY

log() { printf '\033[1;34m[fetch-kube]\033[0m %s\n' "$*" >&2; }

if [ -f "$DEST/.complete" ]; then
  echo "$DEST"
  exit 0
fi
command -v go >/dev/null || { echo "go (1.24 or newer) is required: https://go.dev/dl or apt-get install golang" >&2; exit 1; }

mkdir -p "$CACHE/kube"
# Two test sessions may build at once: one does the work, the other waits and finds the stamp.
exec 9>"$CACHE/kube/.lock"
flock 9
if [ -f "$DEST/.complete" ]; then
  echo "$DEST"
  exit 0
fi

export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$DEST.partial/bin" "$DEST.partial/crds"
OUT=$DEST.partial/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# wrapper NAME: a throwaway module that pins one upstream main package with its replace lines.
wrapper() {
  rm -rf "${work:?}/$1"
  mkdir -p "$work/$1"
  cd "$work/$1"
  go mod init "wrapper.local/$1" >/dev/null 2>&1
}

# The replace lines of a module whose go.mod points its siblings at local folders (etcd, kubernetes):
# a wrapper cannot follow "../api", so each sibling is pinned to the same released version instead.
pin_siblings() {  # MODULE VERSION SIBLING_VERSION
  local gomod
  gomod=$(go mod download -json "$1@$2" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  grep -E '^\s*(replace\s+)?[a-z0-9./-]+ => \.' "$gomod" | grep -v FORBIDDEN_DEPENDENCY \
    | sed -E 's/^\s*(replace\s+)?([^ ]+) => .*/\2/' | while read -r module; do
      go mod edit -replace="$module=$module@$3"
    done
}

if [ ! -x "$OUT/etcd" ]; then
  log "building etcd $ETCD_VERSION (about 2 minutes cold)"
  wrapper etcd
  pin_siblings go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
fi

if [ ! -x "$OUT/kube-apiserver" ]; then
  log "building kube-apiserver $K8S_VERSION (about 9 minutes cold)"
  wrapper apiserver
  staging=v0.${K8S_VERSION#v1.}
  pin_siblings k8s.io/kubernetes "$K8S_VERSION" "$staging"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" >/dev/null 2>&1
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  v=k8s.io/component-base/version
  # Without these /version answers v0.0.0 and helm's capability checks go astray.
  go build -trimpath -o "$OUT/kube-apiserver" \
    -ldflags "-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor" \
    k8s.io/kubernetes/cmd/kube-apiserver
fi

if [ ! -x "$OUT/helm" ]; then
  log "building helm $HELM_VERSION (about 6 minutes cold)"
  wrapper helm
  go get "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >/dev/null 2>&1
  go build -trimpath -o "$OUT/helm" \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" helm.sh/helm/v4/cmd/helm
fi

if [ ! -x "$OUT/kuberay-operator" ]; then
  log "building the KubeRay operator $KUBERAY_VERSION (about 3 minutes cold)"
  wrapper kuberay
  go get "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$OUT/kuberay-operator" github.com/ray-project/kuberay/ray-operator
fi

dir=$(go mod download -json "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
for kind in rayclusters rayjobs rayservices; do
  cp "$dir/config/crd/bases/ray.io_$kind.yaml" "$DEST.partial/crds/"
done
chmod -R u+w "$DEST.partial"

cat >"$DEST.partial/versions.env" <<EOF
ETCD_VERSION=$ETCD_VERSION
K8S_VERSION=$K8S_VERSION
HELM_VERSION=$HELM_VERSION
KUBERAY_VERSION=$KUBERAY_VERSION
EOF
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
touch "$DEST/.complete"
log "control plane ready in $DEST"
echo "$DEST"
