#!/usr/bin/env bash
# Fetch the JVM services of the cluster-mode change feed from Maven Central, cached by version:
#   ~/.cache/llm-twin/jars/kafka-<KAFKA>/                       a KRaft broker (kafka.Kafka) + slf4j-simple
#   ~/.cache/llm-twin/jars/connect-<KAFKA>-debezium-<DBZ>/      a Kafka Connect worker + Debezium's Postgres connector
# Idempotent: each folder gets a .complete stamp once every jar is in place; a warm re-run only checks
# stamps (well under a second). Maven's local repository lives under ~/.cache/llm-twin/m2 so a rebuilt
# folder is fetched again without the network. Prints the folder of each bundle, one per line.
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
DEBEZIUM_VERSION=${DEBEZIUM_VERSION:-3.4.3.Final}
SLF4J_VERSION=${SLF4J_VERSION:-1.7.36}   # Kafka 4.1 builds against slf4j-api 1.7.x
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

CACHE=${LLM_TWIN_CACHE:-$HOME/.cache/llm-twin}
JARS=$CACHE/jars
M2=$CACHE/m2

log() { printf '\033[1;34m[fetch-jars]\033[0m %s\n' "$*" >&2; }

# fetch NAME DEP... : resolve the runtime closure of each groupId:artifactId:version into $JARS/NAME.
fetch() {
  local name=$1; shift
  local dest=$JARS/$name
  if [ -f "$dest/.complete" ]; then
    echo "$dest"
    return
  fi
  command -v mvn >/dev/null || { echo "mvn (Apache Maven) is required: apt-get install maven" >&2; exit 1; }
  mkdir -p "$M2" "$JARS"
  # Two test sessions may fetch at once: one does the work, the other waits and finds the stamp.
  exec 9>"$JARS/.lock"
  flock 9
  if [ -f "$dest/.complete" ]; then
    exec 9>&-
    echo "$dest"
    return
  fi
  log "fetching $name from Maven Central (once)"
  tmp=$(mktemp -d)
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0">'
    echo '  <modelVersion>4.0.0</modelVersion>'
    echo "  <groupId>llm-twin.local</groupId><artifactId>jars-$name</artifactId><version>0</version>"
    echo '  <packaging>pom</packaging>'
    echo '  <dependencies>'
    local dep g a v
    for dep in "$@"; do
      IFS=: read -r g a v <<<"$dep"
      echo "    <dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
    done
    echo '  </dependencies>'
    echo '</project>'
  } >"$tmp/pom.xml"
  rm -rf "$dest.partial"
  mvn -q -B -Dstyle.color=never -f "$tmp/pom.xml" -Dmaven.repo.local="$M2" \
    "$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$dest.partial" >&2
  rm -rf "$tmp" "$dest"
  tmp=""
  mv "$dest.partial" "$dest"
  printf '%s\n' "$@" >"$dest/.complete"
  exec 9>&-
  echo "$dest"
}

tmp=""
trap '[ -z "$tmp" ] || rm -rf "$tmp"' EXIT

fetch "kafka-$KAFKA_VERSION" \
  "org.apache.kafka:kafka_2.13:$KAFKA_VERSION" \
  "org.slf4j:slf4j-simple:$SLF4J_VERSION"

fetch "connect-$KAFKA_VERSION-debezium-$DEBEZIUM_VERSION" \
  "org.apache.kafka:connect-runtime:$KAFKA_VERSION" \
  "org.apache.kafka:connect-json:$KAFKA_VERSION" \
  "io.debezium:debezium-connector-postgres:$DEBEZIUM_VERSION" \
  "org.slf4j:slf4j-simple:$SLF4J_VERSION"
