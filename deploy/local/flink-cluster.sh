#!/usr/bin/env bash
# Local standalone Flink cluster (one JobManager + one TaskManager) on loopback, started with the
# PyFlink wheel's own scripts (pyflink/bin/start-cluster.sh, stop-cluster.sh, flink).
#   deploy/local/flink-cluster.sh start|stop|status
#   deploy/local/flink-cluster.sh submit [JOB ARGS...]   # `flink run` flink_jobs/anomaly_job.py, attached;
#                                                        # exits with flink run's status
# Config (a copy of pyflink/conf), logs, pid files and temp files live in $RUN_DIR/flink.
# Environment: FLINK_REST_PORT (8081), FLINK_RPC_PORT (6123), FLINK_TASK_SLOTS (2),
# FLINK_JM_MEMORY (1g), FLINK_TM_MEMORY (2g), FLINK_TM_METASPACE (512m: every PyFlink job submitted
# loads its classes again, and Flink's 256m ran out after 7 jobs on one TaskManager),
# FLINK_JOB_SCRIPT (flink_jobs/anomaly_job.py),
# FLINK_START_TIMEOUT (60 s), FLINK_RESTART_ATTEMPTS (3; the cluster's restart strategy for jobs
# that set none: Flink's own default with checkpointing retries for ever, so a job that fails
# deterministically would keep `submit` waiting for ever).
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
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
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

# write_config PYFLINK_DIR: a fresh copy of the wheel's conf/ with our settings merged into config.yaml.
write_config() {
  local pyflink=$1
  rm -rf "$FLINK_CONF_DIR"
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
    rm -f "$JM_PIDFILE" "$TM_PIDFILE"; log "not running (nothing of ours to stop)"; return 0
  fi
  if [ -f "$FLINK_CONF_DIR/config.yaml" ]; then
    "$(pyflink_dir)/bin/stop-cluster.sh" 2>&1 | sed 's/^/  stop-cluster: /' >&2 || true
  fi
  # Whatever stop-cluster.sh left (e.g. a lost config copy): our pids only, TERM then KILL.
  for p in $pids; do
    kill -0 "$p" 2>/dev/null || continue
    log "stopping leftover pid $p"; kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && { log "pid $p did not stop within 15s, killing it"; kill -KILL "$p" 2>/dev/null || true; }
  done
  rm -f "$JM_PIDFILE" "$TM_PIDFILE"
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

submit() {
  local pyflink started rc
  healthy || die "no healthy cluster on http://localhost:$FLINK_REST_PORT: run '$0 start' first"
  pyflink=$(pyflink_dir)
  log "flink run $JOB_SCRIPT $* (attached, cluster localhost:$FLINK_REST_PORT)"
  started=$(now)
  set +e
  # `--` ends flink's own options: everything after it reaches the job's argv unchanged (and a job
  # option that flink also knows, like --parallelism, is not swallowed by the CLI).
  "$pyflink/bin/flink" run -m "localhost:$FLINK_REST_PORT" \
    -pyexec "$PYTHON" -pyclientexec "$PYTHON" -py "$JOB_SCRIPT" -- "$@"
  rc=$?
  set -e
  log "flink run exited with status $rc after $(since "$started")s"
  return "$rc"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  submit) shift; submit "$@" ;;
  *) echo "usage: $0 start|stop|status|submit [JOB ARGS...]" >&2; exit 2 ;;
esac
