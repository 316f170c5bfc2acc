#!/usr/bin/env bash
# Local standalone Flink cluster (one JobManager + one TaskManager) on loopback, started with the
# PyFlink wheel's own scripts (pyflink/bin/start-cluster.sh, stop-cluster.sh, taskmanager.sh, flink).
#
#   deploy/local/flink-cluster.sh start|stop|status
#   deploy/local/flink-cluster.sh submit [--detached] [--from PATH] [JOB ARGS...]
#       `flink run` flink_jobs/anomaly_job.py; attached (exits with flink run's status) unless
#       --detached (prints the JobID and returns); --from resumes from a savepoint or a retained
#       checkpoint (flink run -s PATH)
#   deploy/local/flink-cluster.sh jobs                      # running jobs: JobID : name (RUNNING)
#   deploy/local/flink-cluster.sh savepoint JOB_ID [DIR]    # a savepoint, the job keeps running; prints its path
#   deploy/local/flink-cluster.sh stop-with-savepoint JOB_ID [DIR] [--drain]
#       a savepoint, then the job stops (sources first, nothing in flight is lost); prints its path.
#       --drain ends the job for good: event time jumps to the end, so bars and buffers are flushed
#       (to resume later, leave it out)
#   deploy/local/flink-cluster.sh cancel JOB_ID             # its last checkpoint is kept (CHECKPOINT_RETENTION)
#   deploy/local/flink-cluster.sh latest-checkpoint [DIR]
#       the newest completed checkpoint under DIR (default CHECKPOINT_DIR, else the cluster's),
#       for `submit --from`; exits 1 when there is none
#   deploy/local/flink-cluster.sh add-taskmanager           # one more TaskManager (a replacement after a
#                                                           # failure, or more slots)
#
# Savepoints go to DIR, else to the cluster's $RUN_DIR/flink/savepoints; checkpoints of jobs that
# set no CHECKPOINT_DIR to $RUN_DIR/flink/checkpoints. Config (a copy of pyflink/conf), logs, pid
# files and temp files live in $RUN_DIR/flink; start and stop empty its temp files (tmp/).
# Environment: FLINK_REST_PORT (8081), FLINK_RPC_PORT (6123; the TaskManagers' ports are ephemeral),
# FLINK_TASK_SLOTS (2), FLINK_JM_MEMORY (1g), FLINK_TM_MEMORY (2g), FLINK_TM_METASPACE (512m; Flink's
# default is 256m, and each PyFlink job submitted to a TaskManager keeps about 45 MB of it after it
# ends, so about the fifth to seventh job on one TaskManager failed with OutOfMemoryError: Metaspace:
# raise it, or restart the cluster between long series of submissions; docs/reliability.md),
# FLINK_JOB_SCRIPT (flink_jobs/anomaly_job.py), FLINK_START_TIMEOUT (60 s), FLINK_RESTART_ATTEMPTS (3; the cluster's
# restart strategy for jobs that set none (RESTART_STRATEGY): Flink's own default with checkpointing
# retries for ever, so a job that fails deterministically would keep `submit` waiting for ever).
# The job reads its own settings (SYMBOLS, CHDB_PATH, KAFKA_*, ...) from the environment of
# `submit` (client side) and ships them to the operators; see `python config.py`.
set -euo pipefail
COMPONENT=flink
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FLINK_REST_PORT="${FLINK_REST_PORT:-8081}"
FLINK_RPC_PORT="${FLINK_RPC_PORT:-6123}"
FLINK_TASK_SLOTS="${FLINK_TASK_SLOTS:-2}"
FLINK_JM_MEMORY="${FLINK_JM_MEMORY:-1g}"
FLINK_TM_MEMORY="${FLINK_TM_MEMORY:-2g}"
FLINK_TM_METASPACE="${FLINK_TM_METASPACE:-512m}"
FLINK_START_TIMEOUT="${FLINK_START_TIMEOUT:-60}"
FLINK_RESTART_ATTEMPTS="${FLINK_RESTART_ATTEMPTS:-3}"
case "$RUN_DIR" in /*) ;; *) RUN_DIR="$PWD/$RUN_DIR" ;; esac   # the daemons run from $FLINK_DIR
FLINK_DIR="$RUN_DIR/flink"
PYTHON="$VENV_DIR/bin/python"
JOB_SCRIPT="${FLINK_JOB_SCRIPT:-$PROJECT_DIR/flink_jobs/anomaly_job.py}"

# Read by Flink's bin/config.sh: our own config copy, log and pid directories, pid file names.
export FLINK_CONF_DIR="$FLINK_DIR/conf"
export FLINK_LOG_DIR="$FLINK_DIR/log"
export FLINK_PID_DIR="$FLINK_DIR"
export FLINK_IDENT_STRING="${FLINK_IDENT_STRING:-${USER:-$(id -un)}}"
JM_PIDFILE="$FLINK_PID_DIR/flink-$FLINK_IDENT_STRING-standalonesession.pid"
TM_PIDFILE="$FLINK_PID_DIR/flink-$FLINK_IDENT_STRING-taskexecutor.pid"
# Python workers (process mode: python.executable; thread mode: pemja) must find the venv first.
export PATH="$VENV_DIR/bin:$PATH"

pyflink_dir() {
  [ -x "$PYTHON" ] || die "no virtual environment at $VENV_DIR: run deploy/local/setup.sh (or make setup)"
  "$PYTHON" -c 'import pyflink, os; print(os.path.dirname(pyflink.__file__))' \
    || die "pyflink is not importable with $PYTHON"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# alive_pids PIDFILE: the running pids listed in a Flink pid file (it may hold several lines).
alive_pids() {
  local p
  [ -f "$1" ] || return 0
  while read -r p; do
    [ -n "$p" ] && running "$p" && echo "$p"
  done < "$1"
  return 0
}
our_pids() { alive_pids "$JM_PIDFILE"; alive_pids "$TM_PIDFILE"; }

# The REST overview as JSON (Python rather than curl: the venv is the one thing sure to be here).
overview() {
  "$PYTHON" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())' \
    "http://localhost:$FLINK_REST_PORT/overview" 2>/dev/null
}
taskmanager_count() { overview | sed -n 's/.*"taskmanagers":\([0-9]*\).*/\1/p'; }
healthy() { local n; n=$(taskmanager_count) && [ "${n:-0}" -ge 1 ]; }

show_logs() {
  local f
  for f in "$FLINK_LOG_DIR"/flink-*-standalonesession-*.log "$FLINK_LOG_DIR"/flink-*-taskexecutor-*.log \
           "$FLINK_LOG_DIR"/flink-*-standalonesession-*.out "$FLINK_LOG_DIR"/flink-*-taskexecutor-*.out; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
}

# clear_scratch: empties io.tmp.dirs, called only while none of our processes runs. Each TaskManager
# keeps a folder there (tm_<host:port>-*) with every job's jars (blobStorage, about 45 MB per job)
# and the Python files it ships; Flink removes neither when the TaskManager stops, so a test session
# or a benchmark left gigabytes behind per cluster start (6 GB seen in a day's runs).
clear_scratch() {
  if [ -d "$FLINK_DIR/tmp" ] && [ -n "$(ls -A "$FLINK_DIR/tmp")" ]; then
    log "removing the scratch of stopped Flink processes ($(du -sh "$FLINK_DIR/tmp" | cut -f1) in $FLINK_DIR/tmp)"
    find "${FLINK_DIR:?}/tmp" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  fi
}

# write_config PYFLINK_DIR: a fresh copy of the wheel's conf/ with our settings merged into config.yaml.
write_config() {
  local pyflink=$1
  rm -rf "$FLINK_CONF_DIR"
  clear_scratch
  mkdir -p "$FLINK_CONF_DIR" "$FLINK_LOG_DIR" "$FLINK_DIR/tmp"
  cp -R "$pyflink/conf/." "$FLINK_CONF_DIR/"
  echo "localhost:$FLINK_REST_PORT" > "$FLINK_CONF_DIR/masters"
  echo "localhost" > "$FLINK_CONF_DIR/workers"
  "$PYTHON" - "$FLINK_CONF_DIR/config.yaml" \
    "jobmanager.rpc.address=localhost" \
    "jobmanager.rpc.port=$FLINK_RPC_PORT" \
    "jobmanager.bind-host=localhost" \
    "jobmanager.memory.process.size=$FLINK_JM_MEMORY" \
    "taskmanager.bind-host=localhost" \
    "taskmanager.host=localhost" \
    "taskmanager.numberOfTaskSlots=$FLINK_TASK_SLOTS" \
    "taskmanager.memory.process.size=$FLINK_TM_MEMORY" \
    "taskmanager.memory.jvm-metaspace.size=$FLINK_TM_METASPACE" \
    "rest.address=localhost" \
    "rest.bind-address=localhost" \
    "rest.port=$FLINK_REST_PORT" \
    "python.executable=$PYTHON" \
    "python.client.executable=$PYTHON" \
    "env.pid.dir=$FLINK_PID_DIR" \
    "env.log.dir=$FLINK_LOG_DIR" \
    "restart-strategy.type=fixed-delay" \
    "restart-strategy.fixed-delay.attempts=$FLINK_RESTART_ATTEMPTS" \
    "restart-strategy.fixed-delay.delay=2 s" \
    "execution.checkpointing.storage=filesystem" \
    "execution.checkpointing.dir=file://$FLINK_DIR/checkpoints" \
    "execution.checkpointing.savepoint-dir=file://$FLINK_DIR/savepoints" \
    "io.tmp.dirs=$FLINK_DIR/tmp" \
    "web.tmpdir=$FLINK_DIR/tmp/web" <<'PY'
import sys
import yaml

path, settings = sys.argv[1], sys.argv[2:]
with open(path) as f:
    conf = yaml.safe_load(f) or {}
for setting in settings:
    key, value = setting.split("=", 1)
    node, *parts = conf, *key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            sys.exit(f"{path}: cannot set {key}: {part} is not a mapping")
    node[parts[-1]] = yaml.safe_load(value) if value.isdigit() else value
with open(path, "w") as f:
    f.write("# Generated by deploy/local/flink-cluster.sh from pyflink/conf/config.yaml; edits are lost.\n")
    yaml.safe_dump(conf, f, default_flow_style=False, sort_keys=False, width=100000)
PY
}

start() {
  local pyflink started pids n i
  pids=$(our_pids)
  if [ -n "$(alive_pids "$JM_PIDFILE")" ] && healthy; then
    log "already running (pids $(echo $pids)) on http://localhost:$FLINK_REST_PORT"; return 0
  fi
  [ -z "$pids" ] || die "partly running (pids $(echo $pids)) but not healthy on port $FLINK_REST_PORT: run '$0 stop' first"
  rm -f "$JM_PIDFILE" "$TM_PIDFILE"   # stale entries would confuse stop-cluster.sh
  for port in "$FLINK_REST_PORT" "$FLINK_RPC_PORT"; do
    # A JobManager killed a moment ago may still hold its ports while its threads wind down.
    for ((i = 0; i < 20; i++)); do
      port_open 127.0.0.1 "$port" || port_open localhost "$port" || break
      sleep 0.5
    done
    if port_open 127.0.0.1 "$port" || port_open localhost "$port"; then
      die "port $port is taken by another process; set FLINK_REST_PORT / FLINK_RPC_PORT or stop it"
    fi
  done
  pyflink=$(pyflink_dir)
  write_config "$pyflink"
  log "starting JobManager + TaskManager ($FLINK_TASK_SLOTS slots) from $pyflink (conf: $FLINK_CONF_DIR, logs: $FLINK_LOG_DIR)"
  started=$(now)
  # Started from $FLINK_DIR, not the checkout: Python workers inherit the daemon's working directory,
  # and the job must run from the files it ships (add_python_file), not from a stray cwd import.
  (cd "$FLINK_DIR" && "$pyflink/bin/start-cluster.sh") 2>&1 | sed 's/^/  start-cluster: /' >&2
  for ((i = 0; i < FLINK_START_TIMEOUT * 2; i++)); do
    n=$(taskmanager_count || true)
    if [ "${n:-0}" -ge 1 ]; then
      log "cluster ready after $(since "$started")s: http://localhost:$FLINK_REST_PORT, $n taskmanager(s)," \
          "jobmanager pid $(alive_pids "$JM_PIDFILE"), taskmanager pid $(alive_pids "$TM_PIDFILE")"
      return 0
    fi
    if [ -z "$(alive_pids "$JM_PIDFILE")" ] || [ -z "$(alive_pids "$TM_PIDFILE")" ]; then
      show_logs; stop >/dev/null 2>&1 || true
      die "a Flink process exited during start-up (see $FLINK_LOG_DIR)"
    fi
    sleep 0.5
  done
  show_logs; stop >/dev/null 2>&1 || true
  die "no taskmanager registered at http://localhost:$FLINK_REST_PORT/overview within ${FLINK_START_TIMEOUT}s (see $FLINK_LOG_DIR)"
}

stop() {
  local pids p i
  pids=$(our_pids)
  if [ -z "$pids" ]; then
    rm -f "$JM_PIDFILE" "$TM_PIDFILE"; clear_scratch; log "not running (nothing of ours to stop)"; return 0
  fi
  if [ -f "$FLINK_CONF_DIR/config.yaml" ]; then
    "$(pyflink_dir)/bin/stop-cluster.sh" 2>&1 | sed 's/^/  stop-cluster: /' >&2 || true
  fi
  # Whatever stop-cluster.sh left (e.g. a lost config copy): our pids only, TERM then KILL.
  for p in $pids; do
    running "$p" || continue
    log "stopping leftover pid $p"; kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do running "$p" || break; sleep 0.1; done
    running "$p" && { log "pid $p did not stop within 15s, killing it"; kill -KILL "$p" 2>/dev/null || true; }
  done
  rm -f "$JM_PIDFILE" "$TM_PIDFILE"
  clear_scratch
  log "stopped (pids $(echo $pids))"
}

status() {
  local jm tm json
  jm=$(alive_pids "$JM_PIDFILE"); tm=$(alive_pids "$TM_PIDFILE")
  if [ -z "$jm$tm" ]; then echo "flink: stopped"; return 3; fi
  if [ -n "$jm" ] && json=$(overview); then
    echo "$json" | "$PYTHON" -c '
import json, sys
o = json.load(sys.stdin)
print("flink: running, jobmanager pid {jm}, taskmanager pid {tm}, http://localhost:{port} (Flink {v})".format(
    jm=sys.argv[1], tm=sys.argv[2] or "none", port=sys.argv[3], v=o.get("flink-version", "?")))
print("  taskmanagers {taskmanagers}, slots {slots-available}/{slots-total} free, jobs: {jobs-running} running,"
      " {jobs-finished} finished, {jobs-cancelled} cancelled, {jobs-failed} failed".format(**o))
sys.exit(0 if o.get("taskmanagers", 0) >= 1 else 1)
' "$(echo $jm)" "$(echo $tm)" "$FLINK_REST_PORT"
    return
  fi
  echo "flink: processes alive (jobmanager: ${jm:-none}, taskmanager: ${tm:-none}) but http://localhost:$FLINK_REST_PORT not answering"
  return 1
}

flink_cli() { "$(pyflink_dir)/bin/flink" "$@"; }

submit() {
  local started rc detached="" from="" mode=attached
  while [ $# -gt 0 ]; do
    case "$1" in
      --detached) detached=1; mode=detached; shift ;;
      --from) [ $# -ge 2 ] || die "--from needs a savepoint or checkpoint path"; from=$2; shift 2 ;;
      *) break ;;
    esac
  done
  healthy || die "no healthy cluster on http://localhost:$FLINK_REST_PORT: run '$0 start' first"
  log "flink run $JOB_SCRIPT $* ($mode${from:+, from $from}, cluster localhost:$FLINK_REST_PORT)"
  started=$(now)
  set +e
  # `--` ends flink's own options: everything after it reaches the job's argv unchanged (and a job
  # option that flink also knows, like --parallelism, is not swallowed by the CLI).
  flink_cli run -m "localhost:$FLINK_REST_PORT" ${detached:+-d} ${from:+-s "$from"} \
    -pyexec "$PYTHON" -pyclientexec "$PYTHON" -py "$JOB_SCRIPT" -- "$@"
  rc=$?
  set -e
  log "flink run exited with status $rc after $(since "$started")s"
  return "$rc"
}

# savepoint_path: the path in the CLI's "Savepoint completed. Path: ..." line, on stdout.
savepoint_path() { sed -n 's/.*Savepoint completed\. Path: \(.*\)$/\1/p' | tail -n 1; }

savepoint() {
  local out path
  [ $# -ge 1 ] || die "usage: $0 savepoint JOB_ID [DIR]"
  out=$(flink_cli savepoint -m "localhost:$FLINK_REST_PORT" "$1" ${2:+"$2"} 2>&1) || { echo "$out" >&2; die "savepoint of $1 failed"; }
  path=$(savepoint_path <<<"$out")
  [ -n "$path" ] || { echo "$out" >&2; die "no savepoint path in the output of flink savepoint"; }
  log "savepoint of job $1 at $path"
  echo "$path"
}

stop_with_savepoint() {
  local out path drain="" args=()
  for arg in "$@"; do
    if [ "$arg" = --drain ]; then drain=1; else args+=("$arg"); fi
  done
  [ ${#args[@]} -ge 1 ] || die "usage: $0 stop-with-savepoint JOB_ID [DIR] [--drain]"
  out=$(flink_cli stop -m "localhost:$FLINK_REST_PORT" ${drain:+--drain} ${args[1]:+--savepointPath "${args[1]}"} \
        "${args[0]}" 2>&1) || { echo "$out" >&2; die "stop-with-savepoint of ${args[0]} failed"; }
  path=$(savepoint_path <<<"$out")
  [ -n "$path" ] || { echo "$out" >&2; die "no savepoint path in the output of flink stop"; }
  if [ -n "$drain" ]; then
    log "job ${args[0]} drained and stopped with a savepoint at $path"
  else
    log "job ${args[0]} stopped with a savepoint at $path; resume with: $0 submit --from $path"
  fi
  echo "$path"
}

# latest_checkpoint [DIR]: the chk-N directory whose _metadata (written last, when the checkpoint
# completes) is the newest under DIR/<job id>/; checkpoints still in progress have none.
latest_checkpoint() {
  local dir=${1:-${CHECKPOINT_DIR:-file://$FLINK_DIR/checkpoints}} newest
  dir=${dir#file://}
  [ -d "$dir" ] || die "no checkpoint directory $dir"
  newest=$(find "$dir" -mindepth 3 -maxdepth 3 -path '*/chk-*/_metadata' -printf '%T@ %h\n' 2>/dev/null \
           | sort -n | tail -n 1 | cut -d' ' -f2-)
  [ -n "$newest" ] || { log "no completed checkpoint under $dir"; return 1; }
  echo "file://$newest"
}

# taskmanager_ids: the ResourceIDs of the registered TaskManagers, one per line.
taskmanager_ids() {
  "$PYTHON" -c 'import json, sys, urllib.request
print("\n".join(t["id"] for t in json.load(urllib.request.urlopen(sys.argv[1], timeout=3))["taskmanagers"]))' \
    "http://localhost:$FLINK_REST_PORT/taskmanagers" 2>/dev/null
}

add_taskmanager() {
  local before i id
  [ -n "$(alive_pids "$JM_PIDFILE")" ] || die "no JobManager running: run '$0 start' first"
  # By id, not by count: a TaskManager that just died may still be listed, or leave as this one joins.
  before=$(taskmanager_ids || true)
  (cd "$FLINK_DIR" && "$(pyflink_dir)/bin/taskmanager.sh" start) 2>&1 | sed 's/^/  taskmanager: /' >&2
  for ((i = 0; i < FLINK_START_TIMEOUT * 2; i++)); do
    for id in $(taskmanager_ids || true); do
      if ! grep -qxF "$id" <<<"$before"; then
        log "taskmanager $id registered; taskmanager pids $(echo $(alive_pids "$TM_PIDFILE"))"; return 0
      fi
    done
    sleep 0.5
  done
  die "no new taskmanager registered within ${FLINK_START_TIMEOUT}s (see $FLINK_LOG_DIR)"
}

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  submit) shift; submit "$@" ;;
  jobs) flink_cli list -r -m "localhost:$FLINK_REST_PORT" 2>/dev/null | grep ' : ' || true ;;
  savepoint) shift; savepoint "$@" ;;
  stop-with-savepoint) shift; stop_with_savepoint "$@" ;;
  cancel) shift; [ $# -eq 1 ] || die "usage: $0 cancel JOB_ID"; flink_cli cancel -m "localhost:$FLINK_REST_PORT" "$1" ;;
  latest-checkpoint) shift; latest_checkpoint "$@" ;;
  add-taskmanager) add_taskmanager ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
