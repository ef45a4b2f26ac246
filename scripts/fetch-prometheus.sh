#!/usr/bin/env bash
# Fetch Prometheus (the server and promtool) from Debian's archive, cached by version:
#   ~/.cache/llm-twin/prometheus/<version>/usr/bin/{prometheus,promtool}
# The package is downloaded (`apt-get download`, no root, nothing installed system-wide) and unpacked
# with `dpkg -x`; services never auto-start. Idempotent: the folder gets a .complete stamp once both
# binaries run; a warm re-run only checks the stamp. Two sessions may fetch at once: one does the
# work under a lock, the other waits and finds the stamp. Prints the folder (the one line on stdout).
# PROMETHEUS_VERSION pins a Debian version (e.g. 2.42.0+ds-5+deb12u1); unset: apt's candidate.
set -euo pipefail

CACHE=${LLM_TWIN_CACHE:-$HOME/.cache/llm-twin}
ROOT=$CACHE/prometheus

log() { printf '\033[1;34m[fetch-prometheus]\033[0m %s\n' "$*" >&2; }

version=${PROMETHEUS_VERSION:-}
if [ -z "$version" ]; then
  # A warm cache answers without apt: the newest complete folder.
  newest=""
  if [ -d "$ROOT" ]; then
    newest=$(find "$ROOT" -mindepth 2 -maxdepth 2 -name .complete | sort -V | tail -n 1)
  fi
  if [ -n "$newest" ]; then
    dirname "$newest"
    exit 0
  fi
  command -v apt-cache >/dev/null || { echo "apt-cache is required (Debian/Ubuntu)" >&2; exit 1; }
  version=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "apt knows no prometheus package: run apt-get update (Debian bookworm has 2.42)" >&2
    exit 1
  fi
fi
dest=$ROOT/${version//[^A-Za-z0-9.+_-]/_}
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi
log "fetching prometheus $version from Debian (once)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# As root, apt would try (and fail, with a warning) to download as its _apt user into this folder.
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root) || sandbox=()
(cd "$tmp" && apt-get download -q "${sandbox[@]}" "prometheus=$version" >&2)
deb=$(ls "$tmp"/prometheus_*.deb)
rm -rf "$dest.partial" "$dest"
dpkg -x "$deb" "$dest.partial"
"$dest.partial/usr/bin/promtool" --version >/dev/null 2>&1 || { echo "promtool does not run" >&2; exit 1; }
"$dest.partial/usr/bin/prometheus" --version >/dev/null 2>&1 || { echo "prometheus does not run" >&2; exit 1; }
mv "$dest.partial" "$dest"
touch "$dest/.complete"
log "prometheus $version in $dest"
echo "$dest"
