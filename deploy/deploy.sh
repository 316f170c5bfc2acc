#!/usr/bin/env bash
# Build the job image and run the detector on Kubernetes with the Flink Kubernetes Operator.
# Every action is a plain docker/kubectl command; --dry-run prints them instead of running them.
set -euo pipefail

PROJECT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/crypto-anomaly-detector/crypto-anomaly-detector}
FLINK_DEPLOYMENT=anomaly-detector
PREVIOUS_IMAGE_ANNOTATION=crypto-anomaly-detector/previous-image
DRY_RUN=${DRY_RUN:-0}

usage() {
  cat <<'USAGE'
usage: deploy/deploy.sh [--dry-run] COMMAND [ARGS]

  build TAG [--push]          docker build the job image (deploy/docker/Dockerfile) as $IMAGE_REPO:TAG
  deploy ENV                  kubectl apply -k deploy/k8s/overlays/ENV (image tag as the overlay pins it)
  status ENV                  the FlinkDeployment (job and lifecycle state, last savepoint), pods
  logs ENV [jobmanager|taskmanager|producer]   recent logs (default: jobmanager)
  savepoint-upgrade ENV TAG   new image for the job and producer: the operator takes a savepoint,
                              stops the job and starts TAG from it (upgradeMode: savepoint)
  rollback ENV                back to the image before the last savepoint-upgrade, again via savepoint

ENV is local, staging or production (namespaces crypto-local, crypto-staging, crypto-prod).
--dry-run (or DRY_RUN=1) prints each command on stderr instead of running it. IMAGE_REPO overrides the
registry path (default ghcr.io/crypto-anomaly-detector/crypto-anomaly-detector; local uses
crypto-anomaly-detector).
USAGE
}

die_usage() { echo "deploy.sh: $*" >&2; echo "run deploy/deploy.sh --help for usage" >&2; exit 2; }

# run CMD...: runs it, or prints it (shell-quoted, on stderr like bash -x) under --dry-run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    { printf '+'; printf ' %q' "$@"; printf '\n'; } >&2
  else
    "$@"
  fi
}

namespace_of() {
  case "$1" in
    local) echo crypto-local ;;
    staging) echo crypto-staging ;;
    production) echo crypto-prod ;;
    *) die_usage "unknown environment '$1' (local, staging or production)" ;;
  esac
}

image_of() {  # ENV TAG
  if [ "$1" = local ]; then echo "crypto-anomaly-detector:$2"; else echo "$IMAGE_REPO:$2"; fi
}

check_tag() {
  [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] && [ "$1" != latest ] \
    || die_usage "'$1' is not a version tag (and 'latest' is not allowed)"
}

cmd_build() {
  [ $# -ge 1 ] || die_usage "build needs a TAG"
  local tag=$1 push=0; shift
  check_tag "$tag"
  for arg in "$@"; do
    case "$arg" in --push) push=1 ;; *) die_usage "build: unknown option '$arg'" ;; esac
  done
  run docker build -f "$PROJECT_DIR/deploy/docker/Dockerfile" -t "$IMAGE_REPO:$tag" \
    -t "crypto-anomaly-detector:$tag" "$PROJECT_DIR"
  if [ "$push" = 1 ]; then run docker push "$IMAGE_REPO:$tag"; fi
}

cmd_deploy() {
  [ $# -eq 1 ] || die_usage "deploy needs exactly one ENV"
  namespace_of "$1" >/dev/null  # the overlay carries its Namespace
  run kubectl apply -k "$PROJECT_DIR/deploy/k8s/overlays/$1"
  echo "Secrets kafka-sasl and clickhouse-credentials hold placeholders: create the real ones (docs/deploy.md)." >&2
}

cmd_status() {
  [ $# -eq 1 ] || die_usage "status needs exactly one ENV"
  local ns; ns=$(namespace_of "$1")
  run kubectl -n "$ns" get flinkdeployment "$FLINK_DEPLOYMENT" -o \
    'custom-columns=NAME:.metadata.name,JOB:.status.jobStatus.state,LIFECYCLE:.status.lifecycleState,IMAGE:.spec.image,SAVEPOINT:.status.jobStatus.savepointInfo.lastSavepoint.location'
  run kubectl -n "$ns" get deployments,pods -l app.kubernetes.io/part-of=crypto-anomaly-detector
}

cmd_logs() {
  [ $# -ge 1 ] && [ $# -le 2 ] || die_usage "logs needs ENV and optionally jobmanager, taskmanager or producer"
  local ns; ns=$(namespace_of "$1")
  case "${2:-jobmanager}" in
    jobmanager) run kubectl -n "$ns" logs "deployment/$FLINK_DEPLOYMENT" --tail=200 ;;
    taskmanager) run kubectl -n "$ns" logs -l "app=$FLINK_DEPLOYMENT,component=taskmanager" --tail=200 --prefix ;;
    producer) run kubectl -n "$ns" logs deployment/producer --tail=200 ;;
    *) die_usage "logs: unknown component '$2' (jobmanager, taskmanager or producer)" ;;
  esac
}

# set_image NS IMAGE PREVIOUS: the operator sees a new spec and, with upgradeMode savepoint, takes a
# savepoint, stops the job and starts the new image from it; the producer rolls to the same image.
# The JobManager's init container (train-model: trains when the registry has no model the new code can
# use) changes image with it, in the same patch; the patch's `test` refuses it if that container moved.
set_image() {
  local ns=$1 image=$2 previous=$3
  local init=/spec/jobManager/podTemplate/spec/initContainers/0 patch
  patch=$(printf '[{"op":"test","path":"%s/name","value":"train-model"},{"op":"replace","path":"%s/image","value":"%s"},{"op":"replace","path":"/spec/image","value":"%s"}]' \
    "$init" "$init" "$image" "$image")
  run kubectl -n "$ns" annotate --overwrite flinkdeployment "$FLINK_DEPLOYMENT" \
    "$PREVIOUS_IMAGE_ANNOTATION=$previous"
  run kubectl -n "$ns" patch flinkdeployment "$FLINK_DEPLOYMENT" --type json -p "$patch"
  run kubectl -n "$ns" set image deployment/producer "producer=$image"
  run kubectl -n "$ns" wait flinkdeployment "$FLINK_DEPLOYMENT" --timeout=10m \
    --for=jsonpath='{.status.lifecycleState}'=STABLE
  run kubectl -n "$ns" rollout status deployment/producer --timeout=5m
}

current_image() {  # NS: the running image, or a placeholder under --dry-run
  if [ "$DRY_RUN" = 1 ]; then
    run kubectl -n "$1" get flinkdeployment "$FLINK_DEPLOYMENT" -o 'jsonpath={.spec.image}'
    echo "<current-image>"
  else
    kubectl -n "$1" get flinkdeployment "$FLINK_DEPLOYMENT" -o 'jsonpath={.spec.image}'
  fi
}

cmd_savepoint_upgrade() {
  [ $# -eq 2 ] || die_usage "savepoint-upgrade needs ENV and TAG"
  local ns; ns=$(namespace_of "$1")
  check_tag "$2"
  set_image "$ns" "$(image_of "$1" "$2")" "$(current_image "$ns")"
}

cmd_rollback() {
  [ $# -eq 1 ] || die_usage "rollback needs exactly one ENV"
  local ns previous; ns=$(namespace_of "$1")
  if [ "$DRY_RUN" = 1 ]; then
    run kubectl -n "$ns" get flinkdeployment "$FLINK_DEPLOYMENT" \
      -o "jsonpath={.metadata.annotations.crypto-anomaly-detector/previous-image}"
    previous="<previous-image>"
  else
    previous=$(kubectl -n "$ns" get flinkdeployment "$FLINK_DEPLOYMENT" \
      -o "jsonpath={.metadata.annotations.crypto-anomaly-detector/previous-image}")
    [ -n "$previous" ] || { echo "deploy.sh: no previous image recorded on $ns/$FLINK_DEPLOYMENT" >&2; exit 1; }
  fi
  set_image "$ns" "$previous" "$(current_image "$ns")"
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1; shift ;;
      -*) die_usage "unknown option '$1'" ;;
      *) break ;;
    esac
  done
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local command=$1; shift
  case "$command" in
    build) cmd_build "$@" ;;
    deploy) cmd_deploy "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    savepoint-upgrade) cmd_savepoint_upgrade "$@" ;;
    rollback) cmd_rollback "$@" ;;
    help) usage ;;
    *) die_usage "unknown command '$command'" ;;
  esac
}

main "$@"
