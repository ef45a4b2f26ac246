#!/usr/bin/env bash
# Build skaffold, and the helm 3 it drives, from the Go module proxy (no GitHub release download
# needed), cached by version:
#   ~/.cache/llm-twin/skaffold/<skaffold version>/skaffold   (static, stripped, CGO off)
#   ~/.cache/llm-twin/skaffold/<skaffold version>/helm       (helm 3: see below)
# Prints the skaffold path, one line, on stdout; everything else goes to stderr. Put its folder first
# on PATH so skaffold finds that helm. Idempotent: a warm run only checks the binaries; two sessions
# building at once take turns on a lock.
#
# Why a helm 3 beside the helm 4 of scripts/fetch-kube.sh: skaffold 2.16 runs `helm version --client`
# before deploying and renders with `helm template --post-renderer <skaffold binary>`; helm 4 removed
# that flag and takes only plugins as post-renderers, so skaffold cannot drive it.
#
# skaffold's go.mod has replace directives, so `go install ...@version` refuses it: the module's own
# source (from the proxy, with its go.mod and go.sum) is copied into a scratch folder and built there,
# which also keeps every dependency at the exact version upstream tested. Go's module and build
# caches live under ~/.cache/llm-twin/go (shared with scripts/fetch-kube.sh).
# Cold, on two busy cores: tens of minutes (skaffold links the Docker, buildpacks, ko, kaniko and
# cloud SDKs). `nice -n 19 env GOMAXPROCS=1 scripts/fetch-skaffold.sh` keeps it out of the way.
set -euo pipefail

SKAFFOLD_VERSION=${SKAFFOLD_VERSION:-v2.16.1}
HELM3_VERSION=${HELM3_VERSION:-v3.22.0}
MODULE=github.com/GoogleContainerTools/skaffold/v2

CACHE=${LLM_TWIN_CACHE:-$HOME/.cache/llm-twin}
DEST=$CACHE/skaffold/$SKAFFOLD_VERSION
BIN=$DEST/skaffold
HELM=$DEST/helm
HELM_STAMP=$DEST/.helm-$HELM3_VERSION

log() { printf '\033[1;34m[fetch-skaffold]\033[0m %s\n' "$*" >&2; }
ready() { [ -x "$BIN" ] && [ -x "$HELM" ] && [ -f "$HELM_STAMP" ]; }

if ready; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "go (1.26 or newer) is required: https://go.dev/dl or apt-get install golang" >&2; exit 1; }

mkdir -p "$CACHE/skaffold"
exec 9>"$CACHE/skaffold/.lock"
flock 9
if ready; then
  echo "$BIN"
  exit 0
fi

export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -x "$BIN" ]; then
  log "building skaffold $SKAFFOLD_VERSION from the Go module proxy (minutes to tens of minutes when cold)"
  info=$(go mod download -json "$MODULE@$SKAFFOLD_VERSION")
  src=$(printf '%s\n' "$info" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
  [ -n "$src" ] && [ -f "$src/go.mod" ] || { echo "go mod download $MODULE@$SKAFFOLD_VERSION failed: $info" >&2; exit 1; }
  commit=$(printf '%s\n' "$info" | sed -n 's/^\s*"Hash": "\(.*\)",\?$/\1/p' | head -n 1)
  cp -r "$src/." "$work/skaffold"
  chmod -R u+w "$work/skaffold"
  # The flags of upstream's Makefile (version stamp, the tags of its Linux release build, stripped).
  version_pkg=$MODULE/pkg/skaffold/version
  ldflags="-s -w -X $version_pkg.version=$SKAFFOLD_VERSION -X $version_pkg.gitCommit=${commit:-unknown}"
  ldflags="$ldflags -X $version_pkg.buildDate=1970-01-01T00:00:00Z"
  (cd "$work/skaffold" && go build -trimpath -tags "timetzdata osusergo netgo release" -ldflags "$ldflags" \
    -o "$BIN.partial" ./cmd/skaffold)
  "$BIN.partial" version >/dev/null
  mv "$BIN.partial" "$BIN"
fi

if [ ! -x "$HELM" ] || [ ! -f "$HELM_STAMP" ]; then
  log "building helm $HELM3_VERSION (the helm skaffold $SKAFFOLD_VERSION drives)"
  # No replace directives in helm 3's go.mod: `go install` of the named version works.
  GOBIN=$work/bin go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION"
  "$work/bin/helm" version --client >/dev/null
  mv "$work/bin/helm" "$HELM"
  rm -f "$DEST"/.helm-*
  touch "$HELM_STAMP"
fi

log "ready: $("$BIN" version), helm $("$HELM" version --client --template '{{.Version}}') in $DEST"
echo "$BIN"
