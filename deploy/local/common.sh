# Shared helpers for the local-stack scripts. Sourced, not run.
# Everything lives under RUN_DIR (default: <project>/.run): binaries, logs, pid files, data.

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="${RUN_DIR:-$PROJECT_DIR/.run}"
VENV_DIR="${VENV_DIR:-$PROJECT_DIR/.venv}"
LIB_DIR="${LIB_DIR:-$RUN_DIR/lib}"

log() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "${COMPONENT:-stack}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# port_open HOST PORT -> 0 when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# running PID -> 0 when the process runs: a killed daemon stays a zombie until init reaps it, and
# kill -0 still succeeds on a zombie.
running() { kill -0 "$1" 2>/dev/null && ! grep -q '^[^)]*) [ZX]' "/proc/$1/stat" 2>/dev/null; }

# pid_alive PIDFILE -> 0 when the pid file names a running process.
pid_alive() { [ -f "$1" ] && running "$(cat "$1")"; }

# wait_for_port HOST PORT SECONDS PIDFILE: waits until the port answers; fails early if the
# process that should open it has died.
wait_for_port() {
  local host=$1 port=$2 seconds=$3 pidfile=$4 i
  for ((i = 0; i < seconds * 10; i++)); do
    port_open "$host" "$port" && return 0
    if [ -n "$pidfile" ] && ! pid_alive "$pidfile"; then return 1; fi
    sleep 0.1
  done
  return 1
}

# stop_pid PIDFILE NAME SECONDS: SIGTERM, wait for a clean exit, SIGKILL as a last resort.
stop_pid() {
  local pidfile=$1 name=$2 seconds=$3 pid i
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"; log "$name is not running (nothing of ours to stop)"; return 0
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for ((i = 0; i < seconds * 10; i++)); do
    running "$pid" || { rm -f "$pidfile"; log "$name stopped (pid $pid)"; return 0; }
    sleep 0.1
  done
  log "$name did not stop within ${seconds}s, killing pid $pid"
  kill -KILL "$pid" 2>/dev/null; rm -f "$pidfile"
}
