#!/usr/bin/env bash
# The end-to-end demo on the embedded default (make demo):
#   set-up -> Kafka broker -> derive demo trades from real candles -> train a model (first run)
#   -> replay into Kafka
#   -> the PyFlink job in a local MiniCluster (bounded) -> trades/anomalies in chDB -> summary
#   -> the report (PNG charts + one self-contained HTML page), whose path it prints last.
# Stops what it started (the broker, unless it was already running). Safe to run again: the topic
# is recreated and the store's replay-safe keys keep one row per trade.
set -euo pipefail
COMPONENT=demo
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY="$VENV_DIR/bin/python"
DEMO_DIR="$RUN_DIR/demo"
SAMPLES="$PROJECT_DIR/producer/samples"
export KAFKA_TOPIC="${KAFKA_TOPIC:-trades}"

bash "$PROJECT_DIR/deploy/local/setup.sh"

started_kafka=""
cleanup() { [ -z "$started_kafka" ] || bash "$PROJECT_DIR/deploy/local/kafka.sh" stop; }
trap cleanup EXIT
if ! bash "$PROJECT_DIR/deploy/local/kafka.sh" status >/dev/null 2>&1; then
  bash "$PROJECT_DIR/deploy/local/kafka.sh" start
  started_kafka=1
fi

cd "$PROJECT_DIR"
mkdir -p "$DEMO_DIR/training"
# DERIVED trades (see producer/derive.py and producer/samples/SOURCE.md): real Binance.US
# 1-minute candles put at each symbol's price level with `scale`. The model trains on 8 March
# 2023; the replay is 9 and 10 March, the eve of the USDC de-peg. Same seed, same trades.
#        symbol   candles  replay start       replay end         scale      trades seed first-id
while read -r symbol series start end scale trades seed first_id; do
  candles="$SAMPLES/${series}_1m_20230301_20230321.csv.gz"
  "$PY" -m producer derive --candles "$candles" --start "$start" --end "$end" --scale "$scale" \
    --trades "$trades" --seed "$seed" --first-id "$first_id" --out "$DEMO_DIR/$symbol-trades-derived.csv"
  "$PY" -m producer derive --candles "$candles" --start "2023-03-08T${start#*T}" --end "2023-03-08T${end#*T}" \
    --scale "$scale" --trades "$trades" --seed "$((seed + 100))" --first-id 1 \
    --out "$DEMO_DIR/training/$symbol-trades-derived.csv"
done <<'TABLE'
BTCUSDT  BTCUSDT  2023-03-10T20:00  2023-03-10T22:00  1          24000  1  3000000000
ETHUSDT  BTCUSD   2023-03-10T20:00  2023-03-10T22:00  0.0716     20000  2  1200000000
BNBUSDT  BTCUSDC  2023-03-10T20:00  2023-03-10T22:00  0.0143     16000  3  700000000
SOLUSDT  BTCUSDT  2023-03-09T20:00  2023-03-09T22:00  0.00088    16000  4  400000000
XRPUSDT  BTCUSD   2023-03-09T20:00  2023-03-09T22:00  0.0000183  24000  5  600000000
TABLE

# A usable model: trained on the 8 March trades only when the registry has none the job's feature
# set accepts (first run, or after an upgrade that changed features): the job's own start check.
"$PY" -m models.train --if-missing "$DEMO_DIR"/training/*-trades-derived.csv

"$PY" -m producer replay "$DEMO_DIR"/*-trades-derived.csv --recreate-topic --speed max

log "running the job in a local MiniCluster until the end of the topic"
"$PY" flink_jobs/anomaly_job.py --bounded --group-id demo --run-report "$DEMO_DIR/run-report.json"

echo
"$PY" -m flink_jobs.summary --run-report "$DEMO_DIR/run-report.json"

# No Grafana on a laptop by default: the same views as the dashboards, as files.
echo
"$PY" -m flink_jobs.report --out "${REPORT_DIR:-$RUN_DIR/report}"
