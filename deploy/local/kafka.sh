#!/usr/bin/env bash
# Local Apache Kafka broker (KRaft, one combined broker+controller node) on loopback.
#   deploy/local/kafka.sh start|stop|status
# Binaries come from Maven Central via `deploy/local/setup.sh`; data, logs and the pid file
# live in $RUN_DIR/kafka. Environment: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093),
# KAFKA_HEAP (512m), KAFKA_PARTITIONS (default partitions per topic, 2).
set -euo pipefail
COMPONENT=kafka
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-2}"
KAFKA_DIR="$RUN_DIR/kafka"
PIDFILE="$KAFKA_DIR/kafka.pid"
CLASSPATH_GLOB="$LIB_DIR/kafka/*"

write_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat > "$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${KAFKA_DIR}/data
num.partitions=${KAFKA_PARTITIONS}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
PROPS
  cat > "$KAFKA_DIR/log4j2.properties" <<'PROPS'
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=%d{ISO8601} %-5p [%c{1}] %m%n
PROPS
}

storage_tool() { java -cp "$CLASSPATH_GLOB" kafka.tools.StorageTool "$@"; }

start() {
  [ -d "$LIB_DIR/kafka" ] || die "broker jars missing in $LIB_DIR/kafka: run deploy/local/setup.sh (or make setup)"
  if pid_alive "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_open 127.0.0.1 "$port" && die "port $port is taken by another process; set KAFKA_PORT / KAFKA_CONTROLLER_PORT or stop it"
  done
  write_config
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    log "formatting a new KRaft log directory in $KAFKA_DIR/data"
    storage_tool format -t "$(storage_tool random-uuid)" -c "$KAFKA_DIR/server.properties" >/dev/null
  fi
  log "starting broker on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_DIR/kafka.log)"
  nohup java "-Xmx$KAFKA_HEAP" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
    -cp "$CLASSPATH_GLOB" kafka.Kafka "$KAFKA_DIR/server.properties" \
    > "$KAFKA_DIR/kafka.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  if ! wait_for_port 127.0.0.1 "$KAFKA_PORT" 60 "$PIDFILE"; then
    tail -n 20 "$KAFKA_DIR/kafka.log" >&2 || true
    stop_pid "$PIDFILE" kafka 10
    die "broker did not open 127.0.0.1:$KAFKA_PORT within 60s (see $KAFKA_DIR/kafka.log)"
  fi
  log "broker ready (pid $(cat "$PIDFILE"))"
}

status() {
  if pid_alive "$PIDFILE" && port_open 127.0.0.1 "$KAFKA_PORT"; then
    echo "kafka: running, pid $(cat "$PIDFILE"), 127.0.0.1:$KAFKA_PORT"
  elif pid_alive "$PIDFILE"; then
    echo "kafka: process $(cat "$PIDFILE") alive but port $KAFKA_PORT not answering"; return 1
  else
    echo "kafka: stopped"; return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" kafka 30 ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
