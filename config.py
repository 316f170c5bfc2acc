"""One typed configuration for the whole project, read once and passed down.

Every field has a default and an environment variable that overrides it; command-line options
of the job and the producer override both. `load()` validates everything up front and raises
ConfigError naming the variable and what it accepts, so a bad setting fails at start-up and
never in the middle of a stream.

    python config.py            # prints every variable, its default and what it means
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
RUN_DIR = os.environ.get("RUN_DIR", os.path.join(PROJECT_DIR, ".run"))
LIB_DIR = os.environ.get("LIB_DIR", os.path.join(RUN_DIR, "lib"))  # jars fetched by deploy/local/setup.sh

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
DEFAULT_THRESHOLDS = "BTCUSDT=3.5,ETHUSDT=3.5,BNBUSDT=4.0,SOLUSDT=3.0,XRPUSDT=3.5"
METHODS = ("zscore", "iforest", "combined")
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,30}\Z")   # \Z: '$' would also match before a final newline


_URL_PASSWORD = re.compile(r"//([^:/@\s]+):[^@/\s]*@")


def redact_url(text: str) -> str:
    """The text with the password of every user:password@ in a URL replaced by ***."""
    return _URL_PASSWORD.sub(r"//\1:***@", text)


class ConfigError(ValueError):
    """A setting is missing or out of range; the message names the variable."""


def setting(env: str, default, help: str, *, choices=None, minimum=None, maximum=None,
            secret: bool = False):
    """A dataclass field bound to an environment variable, with its validation rules."""
    return field(default=default, repr=not secret,
                 metadata={"env": env, "help": help, "choices": choices,
                           "minimum": minimum, "maximum": maximum, "secret": secret})


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092", "Kafka bootstrap servers, host:port[,host:port]")
    topic: str = setting("KAFKA_TOPIC", "trades", "Topic of raw trades (websocket trade shape, keyed by symbol)")
    group_id: str = setting("KAFKA_GROUP_ID", "crypto-anomaly-detector", "Consumer group id of the Flink job")
    starting_offsets: str = setting(
        "KAFKA_STARTING_OFFSETS", "earliest", "Where a job without a checkpoint starts reading",
        choices=("earliest", "latest", "committed"))
    partitions: int = setting(
        "KAFKA_TOPIC_PARTITIONS", 2, "Partitions when the producer creates the topic", minimum=1, maximum=10000)
    replication_factor: int = setting(
        "KAFKA_REPLICATION_FACTOR", 1, "Replication factor when the producer creates a topic (3 on managed Kafka)",
        minimum=1, maximum=32)
    retention_ms: int = setting(
        "KAFKA_RETENTION_MS", 7 * 24 * 3600 * 1000,
        "retention.ms of topics the producer creates; -1 keeps messages forever", minimum=-1)
    dead_letter_topic: str = setting(
        "KAFKA_DEAD_LETTER_TOPIC", "trades-dead-letter",
        "Topic of websocket frames the live producer could not use, raw, with a 'reason' header")
    gaps_topic: str = setting(
        "KAFKA_GAPS_TOPIC", "trade-gaps",
        "Topic of trade-id gaps the live producer saw (JSON records, keyed by symbol)")
    compression: str = setting(
        "KAFKA_COMPRESSION", "lz4", "Producer compression codec",
        choices=("none", "gzip", "lz4", "zstd"))
    linger_ms: int = setting(
        "KAFKA_LINGER_MS", 20, "How long the producer waits to fill a batch", minimum=0, maximum=60_000)
    message_trades: int = setting(
        "KAFKA_MESSAGE_TRADES", 200,
        "Most trades of one symbol the producers put in one message (a batch message, a JSON array; the job "
        "pays per message); 1 = one trade per message, the websocket shape", minimum=1, maximum=450)
    message_linger_ms: int = setting(
        "KAFKA_MESSAGE_LINGER_MS", 10,
        "How long the live producer holds a trade for others of its symbol to share its message; 0 = never",
        minimum=0, maximum=10_000)
    batch_size: int = setting(
        "KAFKA_BATCH_SIZE", 256 * 1024, "Largest producer batch per partition, bytes", minimum=1024,
        maximum=16 * 1024 * 1024)
    delivery_timeout_ms: int = setting(
        "KAFKA_DELIVERY_TIMEOUT_MS", 120_000,
        "How long a message may wait for the broker (retries included) before it counts as lost",
        minimum=1000, maximum=3_600_000)
    max_message_bytes: int = setting(
        "KAFKA_MAX_MESSAGE_BYTES", 1024 * 1024,
        "Largest Kafka message: the producer's max_request_size, max.message.bytes of topics it creates, "
        "and the job consumer's max.partition.fetch.bytes", minimum=1024, maximum=64 * 1024 * 1024)
    fetch_max_bytes: int = setting(
        "KAFKA_FETCH_MAX_BYTES", 16 * 1024 * 1024,
        "Most bytes one fetch of the job's Kafka consumer returns (fetch.max.bytes); with the source's "
        "queue of two fetches it bounds the records in flight per source subtask", minimum=1024,
        maximum=1024 * 1024 * 1024)
    security_protocol: str = setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (Confluent Cloud: SASL_SSL)",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = setting(
        "KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism for SASL_* protocols",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    sasl_username: str = setting("KAFKA_SASL_USERNAME", "", "SASL user name (Confluent Cloud: the API key)")
    sasl_password: str = setting(
        "KAFKA_SASL_PASSWORD", "", "SASL password (Confluent Cloud: the API secret); never logged", secret=True)
    ssl_cafile: str = setting(
        "KAFKA_SSL_CAFILE", "", "CA bundle that signs the brokers' certificates; empty = the system's")
    ssl_check_hostname: bool = setting(
        "KAFKA_SSL_CHECK_HOSTNAME", True, "Check that broker certificates name the host")


@dataclass(frozen=True)
class DetectionConfig:
    symbols: tuple = setting(
        "SYMBOLS", DEFAULT_SYMBOLS,
        "Comma-separated symbols the job accepts; '*' accepts every well-formed symbol")
    zscore_thresholds: tuple = setting(
        "ZSCORE_THRESHOLDS", DEFAULT_THRESHOLDS, "Per-symbol z-score thresholds, SYMBOL=VALUE,...")
    default_zscore_threshold: float = setting(
        "ZSCORE_DEFAULT_THRESHOLD", 3.5, "Threshold for symbols not in ZSCORE_THRESHOLDS",
        minimum=0.5, maximum=100.0)
    window_size: int = setting(
        "ROLLING_WINDOW", 1000, "Trades in the rolling statistics window per symbol", minimum=2, maximum=1_000_000)
    min_history: int = setting(
        "MIN_HISTORY", 50, "Trades a symbol needs before it can raise an anomaly", minimum=2, maximum=1_000_000)
    cooldown_seconds: float = setting(
        "COOLDOWN_SECONDS", 60.0,
        "Event-time seconds after an anomaly during which the same symbol and method raise no other",
        minimum=0.0, maximum=86400.0)
    methods: tuple = setting(
        "DETECTION_METHODS", ("zscore", "iforest", "combined"),
        "Methods that raise anomalies: zscore, iforest, combined (both agree)")
    model_registry: str = setting(
        "MODEL_REGISTRY", os.path.join(RUN_DIR, "models"), "Folder of the versioned Isolation Forest models")
    model_version: str = setting(
        "MODEL_VERSION", "latest", "Model version to score with; 'latest' follows the registry (hot swap)")
    model_poll_seconds: float = setting(
        "MODEL_POLL_SECONDS", 10.0, "How often a running job looks for a new latest model",
        minimum=0.5, maximum=86400.0)
    iforest_batch_size: int = setting(
        "IFOREST_BATCH_SIZE", 512,
        "Trades per scoring micro-batch per subtask (one ONNX call, one store record, with or without the model); "
        "SINK_BATCH_SIZE instead where scoring writes the trades rows itself (STORE_TRADES_FROM_SCORING)",
        minimum=1, maximum=100_000)
    iforest_batch_ms: int = setting(
        "IFOREST_BATCH_MS", 5,
        "Longest a trade waits for its micro-batch to fill; SINK_FLUSH_INTERVAL_MS instead where scoring writes the "
        "trades rows itself", minimum=1, maximum=10_000)

    def threshold_for(self, symbol: str) -> float:
        return dict(self.zscore_thresholds).get(symbol, self.default_zscore_threshold)

    def accepts(self, symbol: str) -> bool:
        return "*" in self.symbols or symbol in self.symbols

    @property
    def needs_model(self) -> bool:
        return any(m in self.methods for m in ("iforest", "combined"))


@dataclass(frozen=True)
class StoreConfig:
    clickhouse_url: str = setting(
        "CLICKHOUSE_URL", "",
        "ClickHouse server, e.g. https://host:8443 (https:// = TLS); empty = embedded chDB at CHDB_PATH")
    database: str = setting("CLICKHOUSE_DATABASE", "crypto", "Database holding the tables of sql/")
    user: str = setting("CLICKHOUSE_USER", "default", "ClickHouse user (server backend)")
    password: str = setting("CLICKHOUSE_PASSWORD", "", "ClickHouse password (server backend)", secret=True)
    verify: bool = setting(
        "CLICKHOUSE_VERIFY", True, "Verify the server's TLS certificate and host name (https:// URLs)")
    ca_cert: str = setting(
        "CLICKHOUSE_CA_CERT", "", "CA bundle (PEM) that signs the server's certificate; empty = the system's")
    chdb_path: str = setting(
        "CHDB_PATH", os.path.join(RUN_DIR, "data", "chdb"),
        "Directory of the embedded store; one process may own it at a time")
    batch_size: int = setting(
        "SINK_BATCH_SIZE", 5000, "Rows per insert into each table", minimum=1, maximum=1_000_000)
    flush_interval_ms: int = setting(
        "SINK_FLUSH_INTERVAL_MS", 1000, "Longest time a row waits in the sink buffer",
        minimum=10, maximum=600_000)
    migrate_on_start: bool = setting(
        "STORE_MIGRATE_ON_START", True,
        "The job applies pending sql/ migrations when it starts; false when its user may only insert "
        "(then run python -m flink_jobs.migrate as an administrator)")
    trades_ttl_days: int = setting(
        "TRADES_TTL_DAYS", 0, "Days raw trades are kept, by trade time; 0 = forever (set by python -m flink_jobs.migrate)",
        minimum=0, maximum=36_500)
    bars_1s_ttl_days: int = setting(
        "BARS_1S_TTL_DAYS", 0,
        "Days 1-second bars are kept, by window start; 0 = forever. 1-minute bars and anomalies have no TTL",
        minimum=0, maximum=36_500)
    job_password: str = setting(
        "CLICKHOUSE_JOB_PASSWORD", "",
        "Password the migrations give the job's insert-only server user (migrate --users)", secret=True)
    grafana_password: str = setting(
        "CLICKHOUSE_GRAFANA_PASSWORD", "",
        "Password the migrations give Grafana's read-only server user (migrate --users)", secret=True)

    @property
    def backend(self) -> str:
        return "clickhouse" if self.clickhouse_url else "chdb"

    @property
    def secure(self) -> bool:
        """TLS to the server: the URL's scheme decides, so there is one switch, not two that can disagree."""
        return self.clickhouse_url.startswith("https://")


@dataclass(frozen=True)
class JobConfig:
    parallelism: int = setting("FLINK_PARALLELISM", 2, "Parallelism of the job's operators", minimum=1, maximum=4096)
    checkpoint_interval_ms: int = setting(
        "CHECKPOINT_INTERVAL_MS", 10_000, "Checkpoint interval", minimum=100, maximum=86_400_000)
    checkpoint_dir: str = setting(
        "CHECKPOINT_DIR", "",
        "Where checkpoints go (file:///path, s3://bucket/path); a job can resume from the latest one there "
        "(flink run -s). Empty = the cluster's execution.checkpointing.dir (none in a bare MiniCluster: "
        "JobManager memory, nothing to resume from)")
    checkpoint_retention: str = setting(
        "CHECKPOINT_RETENTION", "RETAIN_ON_CANCELLATION",
        "Whether the last checkpoint outlives a cancelled job (it always outlives a crash)",
        choices=("RETAIN_ON_CANCELLATION", "DELETE_ON_CANCELLATION", "NO_EXTERNALIZED_CHECKPOINTS"))
    restart_strategy: str = setting(
        "RESTART_STRATEGY", "",
        "After a failure: fixed-delay (RESTART_ATTEMPTS tries, RESTART_DELAY_MS apart), exponential-delay "
        "(from RESTART_DELAY_MS doubling to 1 min; the attempt count resets after an hour without failure), "
        "none; empty = the cluster's (the local cluster: fixed-delay, FLINK_RESTART_ATTEMPTS)",
        choices=("", "fixed-delay", "exponential-delay", "none"))
    restart_attempts: int = setting(
        "RESTART_ATTEMPTS", 10, "Restarts before the job fails for good (fixed-delay and exponential-delay)",
        minimum=1, maximum=1_000_000)
    restart_delay_ms: int = setting(
        "RESTART_DELAY_MS", 2000, "Delay before a restart (exponential-delay: the first one)",
        minimum=0, maximum=3_600_000)
    max_out_of_orderness_ms: int = setting(
        "WATERMARK_OUT_OF_ORDERNESS_MS", 2000, "Bounded out-of-orderness of trade event times",
        minimum=0, maximum=3_600_000)
    idle_timeout_ms: int = setting(
        "WATERMARK_IDLE_TIMEOUT_MS", 30_000,
        "A source subtask without trades this long stops holding back the watermark (and bars); 0 = never",
        minimum=0, maximum=3_600_000)
    bars: bool = setting(
        "BARS_ENABLED", True, "Build 1-second and 1-minute OHLCV bars per symbol into the bars table")
    trades_from_scoring: bool = setting(
        "STORE_TRADES_FROM_SCORING", True,
        "The scoring operator inserts the trades and bars rows itself where the store allows it (a ClickHouse server; "
        "chDB at parallelism 1, where one process owns it): one Python stage less on a trade's way to the "
        "store; scoring then waits for the sink's batch (SINK_BATCH_SIZE, SINK_FLUSH_INTERVAL_MS), and the "
        "candidates and alerts with it. False: every row goes through the store sink")
    python_bundle_size: int = setting(
        "PYTHON_BUNDLE_SIZE", 100_000,
        "Most records a Python operator takes before it hands its output on (python.fn-execution.bundle.size)",
        minimum=1, maximum=10_000_000)
    python_bundle_time_ms: int = setting(
        "PYTHON_BUNDLE_TIME_MS", 1000,
        "Longest a Python operator holds its output before handing it on (python.fn-execution.bundle.time)",
        minimum=1, maximum=3_600_000)
    python_arrow_batch_size: int = setting(
        "PYTHON_ARROW_BATCH_SIZE", 1_000,
        "Raw messages parsed together (python.fn-execution.arrow.batch.size, at most PYTHON_BUNDLE_SIZE): "
        "a symbol's trades of a batch reach scoring as one record. A bundle's end sends a partial batch. "
        "The batch is held in the TaskManager's direct memory, up to 64 KiB a batch message: raise it "
        "(10000-50000) only for single-trade messages of many sparse symbols",
        minimum=1, maximum=10_000_000)
    python_state_cache_size: int = setting(
        "PYTHON_STATE_CACHE_SIZE", 20_000,
        "Keyed-state entries a Python worker keeps deserialized (python.state.cache-size; one per symbol for "
        "scoring, one more per symbol with anomalies for the cooldown). Flink's default, 1000, thrashes past "
        "about 1,000 symbols a worker: every trade then reads and writes its state through Java",
        minimum=0, maximum=10_000_000)
    buffer_timeout_ms: int = setting(
        "FLINK_BUFFER_TIMEOUT_MS", 100,
        "Longest a network buffer between operators waits to fill before it is sent (Flink's execution.buffer-timeout)",
        minimum=0, maximum=60_000)
    python_workers: str = setting(
        "PYTHON_WORKERS", "loopback",
        "Local MiniCluster only: 'loopback' runs the Python operators as threads of the launching "
        "process (one GIL; their logs on its console), 'process' in worker processes (faster on "
        "several cores; their logs in pyflink/log or FLINK_LOG_DIR). Clusters always use processes",
        choices=("process", "loopback"))
    bounded: bool = setting(
        "JOB_BOUNDED", False, "Stop at the topic's end offsets seen at start (replays, tests, backtests)")
    connector_jars: str = setting(
        "FLINK_CONNECTOR_JARS", os.path.join(LIB_DIR, "flink"),
        "Directory (or ';'-separated files) of the Flink Kafka connector jars; empty when they are on "
        "Flink's classpath already")


@dataclass(frozen=True)
class LiveConfig:
    ws_url: str = setting(
        "BINANCE_WS_URL", "wss://stream.binance.com:9443",
        "Binance websocket base; data-only: wss://data-stream.binance.vision, US: wss://stream.binance.us:9443")
    rest_url: str = setting(
        "BINANCE_REST_URL", "https://api.binance.com",
        "Binance REST base for exchangeInfo and backfill; data-only: https://data-api.binance.vision, "
        "US: https://api.binance.us; empty = no REST")
    quote_asset: str = setting("LIVE_QUOTE_ASSET", "USDT", "With SYMBOLS='*', every trading pair quoted in this asset")
    max_streams_per_connection: int = setting(
        "WS_MAX_STREAMS_PER_CONNECTION", 200, "Streams per websocket connection (Binance allows 1024)",
        minimum=1, maximum=1024)
    max_message_bytes: int = setting(
        "WS_MAX_MESSAGE_BYTES", 1024 * 1024,
        "Largest websocket message (a frame, or fragments joined); a larger one closes the connection "
        "before it is read (a trade frame is about 250 bytes)", minimum=1024, maximum=64 * 1024 * 1024)
    ping_interval_s: float = setting(
        "WS_PING_INTERVAL_S", 20.0, "Seconds between the client's own pings", minimum=0.05, maximum=600.0)
    ping_timeout_s: float = setting(
        "WS_PING_TIMEOUT_S", 10.0, "A connection without a pong this long after a ping is dropped and reopened",
        minimum=0.02, maximum=600.0)
    reconnect_initial_s: float = setting(
        "WS_RECONNECT_INITIAL_S", 1.0, "First reconnect delay; doubles per failed attempt, with jitter",
        minimum=0.0, maximum=600.0)
    reconnect_max_s: float = setting(
        "WS_RECONNECT_MAX_S", 60.0, "Longest reconnect delay", minimum=0.0, maximum=3600.0)
    max_connection_age_s: float = setting(
        "WS_MAX_CONNECTION_AGE_S", 85_800.0,
        "Reconnect on our terms before Binance cuts a connection at 24 hours", minimum=0.1, maximum=86_400.0)
    queue_size: int = setting(
        "LIVE_QUEUE_SIZE", 100_000, "Messages buffered between the websocket threads and the Kafka sender",
        minimum=1, maximum=10_000_000)
    max_unacked: int = setting(
        "LIVE_MAX_UNACKED", 50_000,
        "Trades and records handed to the Kafka client and not yet acknowledged; the sender waits above it "
        "(kafka-python's own buffer has no memory bound)", minimum=1, maximum=10_000_000)
    enqueue_timeout_ms: int = setting(
        "LIVE_ENQUEUE_TIMEOUT_MS", 1000,
        "How long a websocket thread waits for room in a full queue before the message is dropped (counted)",
        minimum=0, maximum=60_000)
    backfill: bool = setting("LIVE_BACKFILL", True, "Fetch the trades of a gap from REST historicalTrades")
    backfill_max_trades: int = setting(
        "LIVE_BACKFILL_MAX_TRADES", 10_000, "Larger gaps are recorded, not backfilled", minimum=1, maximum=1_000_000)
    backfill_hold_max: int = setting(
        "LIVE_BACKFILL_HOLD_MAX", 20_000,
        "Live trades of one symbol held back (to keep id order) while its gap is backfilled; beyond, the "
        "backfill is abandoned", minimum=1, maximum=1_000_000)
    rest_timeout_s: float = setting(
        "BINANCE_REST_TIMEOUT_S", 5.0, "Timeout of each REST request", minimum=0.1, maximum=120.0)
    rest_max_bytes: int = setting(
        "BINANCE_REST_MAX_BYTES", 32 * 1024 * 1024,
        "Largest REST answer read (exchangeInfo, the largest, is a few MB); a larger one is an error",
        minimum=1024, maximum=1024 * 1024 * 1024)
    metrics_port: int = setting(
        "LIVE_METRICS_PORT", 9108, "Port of /metrics, /healthz and /readyz; 0 = off", minimum=0, maximum=65535)
    stats_interval_s: float = setting(
        "LIVE_STATS_INTERVAL_S", 30.0, "Seconds between stats log lines", minimum=0.1, maximum=86_400.0)


SEVERITIES = ("low", "medium", "high")
# Placeholders an ALERT_DASHBOARD_URL template may use (flink_jobs/alerts/message.py fills them).
DASHBOARD_PLACEHOLDERS = {"symbol": "BTCUSDT", "from_ms": 0, "to_ms": 0, "time_ms": 0}


@dataclass(frozen=True)
class AlertConfig:
    telegram_api_url: str = setting(
        "TELEGRAM_API_URL", "https://api.telegram.org", "Telegram Bot API base (tests point it at loopback)")
    telegram_bot_token: str = setting(
        "TELEGRAM_BOT_TOKEN", "", "Telegram bot token; with TELEGRAM_CHAT_ID turns Telegram alerts on; never logged",
        secret=True)
    telegram_chat_id: str = setting("TELEGRAM_CHAT_ID", "", "Telegram chat (user, group or @channel) that gets alerts")
    slack_webhook_url: str = setting(
        "SLACK_WEBHOOK_URL", "", "Slack incoming webhook URL; turns Slack alerts on; never logged", secret=True)
    min_severity: str = setting(
        "ALERT_MIN_SEVERITY", "medium", "Lowest anomaly severity that is alerted", choices=SEVERITIES)
    methods: tuple = setting(
        "ALERT_METHODS", ("combined",),
        "Detection methods that are alerted (the store keeps all): zscore, iforest, combined")
    cooldown_seconds: float = setting(
        "ALERT_COOLDOWN_SECONDS", 300.0,
        "Event-time seconds after an alert during which the same symbol sends no other (any method)",
        minimum=0.0, maximum=86400.0)
    max_per_minute: int = setting(
        "ALERT_MAX_PER_MINUTE", 20,
        "Global rate limit (token bucket, bursts up to this many); the rest are counted and summarised",
        minimum=1, maximum=10_000)
    dashboard_url: str = setting(
        "ALERT_DASHBOARD_URL", "",
        "Link in each alert, a template with {symbol}, {from_ms}, {to_ms}, {time_ms}; empty = no link")
    queue_size: int = setting(
        "ALERT_QUEUE_SIZE", 1000, "Alerts waiting for the sender thread; beyond, an alert is dropped (counted)",
        minimum=1, maximum=1_000_000)
    http_timeout_s: float = setting(
        "ALERT_HTTP_TIMEOUT_S", 10.0, "Timeout of each webhook request", minimum=0.1, maximum=300.0)
    max_attempts: int = setting(
        "ALERT_MAX_ATTEMPTS", 5, "Attempts per alert and channel (5xx, 429 and connection errors are retried)",
        minimum=1, maximum=100)
    retry_initial_s: float = setting(
        "ALERT_RETRY_INITIAL_S", 1.0, "First retry delay; doubles per attempt (Retry-After wins when given)",
        minimum=0.0, maximum=600.0)
    retry_max_s: float = setting(
        "ALERT_RETRY_MAX_S", 30.0, "Longest retry delay computed by backoff", minimum=0.0, maximum=3600.0)
    delivery_timeout_s: float = setting(
        "ALERT_DELIVERY_TIMEOUT_S", 60.0,
        "Longest an alert may spend in retries per channel before it counts as failed", minimum=0.1,
        maximum=3600.0)
    close_timeout_s: float = setting(
        "ALERT_CLOSE_TIMEOUT_S", 30.0,
        "When the job stops, how long queued alerts may take to go out; the rest are counted as dropped",
        minimum=0.0, maximum=3600.0)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token and self.telegram_chat_id)

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_webhook_url)

    @property
    def enabled(self) -> bool:
        return self.telegram_enabled or self.slack_enabled


@dataclass(frozen=True)
class GrafanaConfig:
    url: str = setting("GRAFANA_URL", "http://127.0.0.1:3000", "Grafana that python -m deploy.grafana.push writes to")
    token: str = setting(
        "GRAFANA_TOKEN", "", "Grafana service-account token for the push (else GRAFANA_USER/GRAFANA_PASSWORD); never logged",
        secret=True)
    user: str = setting("GRAFANA_USER", "", "Grafana user for the push when no GRAFANA_TOKEN is set")
    password: str = setting("GRAFANA_PASSWORD", "", "Password of GRAFANA_USER; never logged", secret=True)
    folder: str = setting("GRAFANA_FOLDER", "Crypto anomalies", "Grafana folder the pushed dashboards go into")
    timeout_s: float = setting(
        "GRAFANA_TIMEOUT_S", 10.0, "Timeout of each Grafana API request", minimum=0.1, maximum=300.0)
    clickhouse_host: str = setting(
        "GRAFANA_CLICKHOUSE_HOST", "127.0.0.1", "ClickHouse host as Grafana's ClickHouse data source reaches it")
    clickhouse_port: int = setting(
        "GRAFANA_CLICKHOUSE_PORT", 9000, "ClickHouse port for Grafana (native 9000/9440 TLS, HTTP 8123/8443 TLS)",
        minimum=1, maximum=65535)
    clickhouse_protocol: str = setting(
        "GRAFANA_CLICKHOUSE_PROTOCOL", "native", "Protocol of Grafana's ClickHouse data source",
        choices=("native", "http"))
    clickhouse_secure: bool = setting("GRAFANA_CLICKHOUSE_SECURE", False, "TLS between Grafana and ClickHouse")
    clickhouse_user: str = setting(
        "GRAFANA_CLICKHOUSE_USER", "crypto_grafana",
        "ClickHouse user of Grafana's data source: a read-only one, as sql/users/ creates (migrate --users)")
    clickhouse_password: str = setting(
        "GRAFANA_CLICKHOUSE_PASSWORD", "", "Password of GRAFANA_CLICKHOUSE_USER; never logged", secret=True)


@dataclass(frozen=True)
class ReportConfig:
    out_dir: str = setting(
        "REPORT_DIR", os.path.join(RUN_DIR, "report"), "Folder python -m flink_jobs.report writes its PNG images and index.html to")
    top_anomalies: int = setting(
        "REPORT_TOP_ANOMALIES", 25, "Anomalies in the report's table (highest severity, then strongest z-score)",
        minimum=1, maximum=10_000)


@dataclass(frozen=True)
class AppConfig:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    job: JobConfig = field(default_factory=JobConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    grafana: GrafanaConfig = field(default_factory=GrafanaConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)


def _repr_without_secrets(section) -> str:
    """The dataclass repr, secret fields left out (repr=False), and passwords inside URLs (as a
    CLICKHOUSE_URL may carry them) hidden: a configuration printed in a log shows no secret."""
    shown = ", ".join(f"{f.name}={redact_url(repr(getattr(section, f.name)))}"
                      for f in dataclasses.fields(section) if f.repr)
    return f"{type(section).__name__}({shown})"


SECTIONS = {"kafka": KafkaConfig, "detection": DetectionConfig, "store": StoreConfig, "job": JobConfig,
            "live": LiveConfig, "grafana": GrafanaConfig, "report": ReportConfig, "alerts": AlertConfig}
for _section in SECTIONS.values():
    _section.__repr__ = _repr_without_secrets


def _parse(f: dataclasses.Field, raw: str):
    """Turns the text of an environment variable into the field's type."""
    name = f.metadata["env"]
    kind = f.type
    try:
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            return int(raw.replace("_", ""))
        if kind == "float":
            return float(raw)
        if kind == "tuple":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw.strip()
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a {kind}") from None


def _check(f: dataclasses.Field, value) -> None:
    meta, name = f.metadata, f.metadata["env"]
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"{name}={value!r}: must be one of {', '.join(meta['choices'])}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ConfigError(f"{name}={value!r}: must be at least {meta['minimum']}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise ConfigError(f"{name}={value!r}: must be at most {meta['maximum']}")


def _parse_thresholds(items: tuple | str) -> tuple:
    """'BTCUSDT=3.5,ETHUSDT=4' -> (('BTCUSDT', 3.5), ('ETHUSDT', 4.0)), validated."""
    if isinstance(items, str):
        items = tuple(p.strip() for p in items.split(",") if p.strip())
    pairs = []
    for item in items:
        if isinstance(item, tuple):
            pairs.append(item)
            continue
        symbol, sep, value = item.partition("=")
        try:
            threshold = float(value)
        except ValueError:
            threshold = float("nan")
        if not sep or not SYMBOL_PATTERN.match(symbol.strip().upper()) or not 0.5 <= threshold <= 100:
            raise ConfigError(
                f"ZSCORE_THRESHOLDS: {item!r} must look like SYMBOL=VALUE with VALUE between 0.5 and 100")
        pairs.append((symbol.strip().upper(), threshold))
    return tuple(pairs)


def _section_from_env(cls, environ: Mapping[str, str], overrides: Mapping[str, object]):
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides and overrides[f.name] is not None:
            value = overrides[f.name]
        elif f.metadata["env"] in environ:
            value = _parse(f, environ[f.metadata["env"]])
        else:
            value = f.default
        _check(f, value)
        values[f.name] = value
    return cls(**values)


def _validate_detection(d: DetectionConfig) -> DetectionConfig:
    symbols = tuple(s.upper() for s in d.symbols)
    if not symbols:
        raise ConfigError("SYMBOLS: at least one symbol (or '*') is required")
    for s in symbols:
        if s != "*" and not SYMBOL_PATTERN.match(s):
            raise ConfigError(f"SYMBOLS: {s!r} is not a symbol (letters and digits, 2 to 30 of them)")
    methods = tuple(m.lower() for m in d.methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ConfigError(f"DETECTION_METHODS: {','.join(unknown) or 'nothing'} is not one of {', '.join(METHODS)}")
    if d.min_history > d.window_size:
        raise ConfigError(f"MIN_HISTORY={d.min_history}: must not exceed ROLLING_WINDOW={d.window_size}")
    return dataclasses.replace(d, symbols=symbols, methods=methods,
                               zscore_thresholds=_parse_thresholds(d.zscore_thresholds))


def _validate_kafka(k: KafkaConfig) -> KafkaConfig:
    if k.security_protocol.startswith("SASL_") and not (k.sasl_username and k.sasl_password):
        raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={k.security_protocol}: needs KAFKA_SASL_USERNAME and "
                          "KAFKA_SASL_PASSWORD")
    if k.ssl_cafile and not os.path.isfile(k.ssl_cafile):
        raise ConfigError(f"KAFKA_SSL_CAFILE={k.ssl_cafile!r}: no such file")
    if k.fetch_max_bytes < k.max_message_bytes:
        raise ConfigError(f"KAFKA_FETCH_MAX_BYTES={k.fetch_max_bytes}: must not be below "
                          f"KAFKA_MAX_MESSAGE_BYTES={k.max_message_bytes}")
    return k


def _validate_store(s: StoreConfig) -> StoreConfig:
    if s.clickhouse_url and not s.clickhouse_url.startswith(("http://", "https://")):
        raise ConfigError("CLICKHOUSE_URL: must start with http:// or https:// (https:// for TLS)")
    if s.ca_cert and not s.secure:
        raise ConfigError("CLICKHOUSE_CA_CERT: set, but CLICKHOUSE_URL is not https:// (no TLS to verify)")
    if s.ca_cert and not os.path.isfile(s.ca_cert):
        raise ConfigError(f"CLICKHOUSE_CA_CERT={s.ca_cert!r}: no such file")
    return s


def _validate_live(v: LiveConfig) -> LiveConfig:
    for name, url, schemes in (("BINANCE_WS_URL", v.ws_url, ("ws://", "wss://")),
                               ("BINANCE_REST_URL", v.rest_url, ("http://", "https://"))):
        if url and not url.startswith(schemes):
            raise ConfigError(f"{name}={url!r}: must start with {' or '.join(schemes)}")
    if v.ping_interval_s <= v.ping_timeout_s:
        raise ConfigError(f"WS_PING_INTERVAL_S={v.ping_interval_s}: must exceed WS_PING_TIMEOUT_S={v.ping_timeout_s}")
    if v.reconnect_max_s < v.reconnect_initial_s:
        raise ConfigError(f"WS_RECONNECT_MAX_S={v.reconnect_max_s}: must not be below "
                          f"WS_RECONNECT_INITIAL_S={v.reconnect_initial_s}")
    return dataclasses.replace(v, ws_url=v.ws_url.rstrip("/"), rest_url=v.rest_url.rstrip("/"),
                               quote_asset=v.quote_asset.upper())


def _validate_grafana(g: GrafanaConfig) -> GrafanaConfig:
    if not g.url.startswith(("http://", "https://")):
        raise ConfigError(f"GRAFANA_URL={g.url!r}: must start with http:// or https://")
    if g.password and not g.user:
        raise ConfigError("GRAFANA_PASSWORD: needs GRAFANA_USER")
    return dataclasses.replace(g, url=g.url.rstrip("/"))


def _validate_alerts(a: AlertConfig) -> AlertConfig:
    if bool(a.telegram_bot_token) != bool(a.telegram_chat_id):
        raise ConfigError("TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID: set both for Telegram alerts, or neither")
    # The URLs' values are not echoed: the webhook URL is itself the secret.
    for name, url, secret in (("TELEGRAM_API_URL", a.telegram_api_url, False),
                              ("SLACK_WEBHOOK_URL", a.slack_webhook_url, True),
                              ("ALERT_DASHBOARD_URL", a.dashboard_url, False)):
        if url and not url.startswith(("http://", "https://")):
            shown = "" if secret else f"={url!r}"
            raise ConfigError(f"{name}{shown}: must start with http:// or https://")
    if a.telegram_bot_token and ("/" in a.telegram_bot_token or any(c.isspace() for c in a.telegram_bot_token)):
        raise ConfigError("TELEGRAM_BOT_TOKEN: must not contain '/' or spaces (it goes into the URL path)")
    methods = tuple(m.lower() for m in a.methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ConfigError(f"ALERT_METHODS: {','.join(unknown) or 'nothing'} is not one of {', '.join(METHODS)}")
    if a.dashboard_url:
        try:
            a.dashboard_url.format(**DASHBOARD_PLACEHOLDERS)
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigError(f"ALERT_DASHBOARD_URL={a.dashboard_url!r}: bad placeholder {error}; use "
                              f"{', '.join('{' + k + '}' for k in DASHBOARD_PLACEHOLDERS)}") from None
    if a.retry_max_s < a.retry_initial_s:
        raise ConfigError(f"ALERT_RETRY_MAX_S={a.retry_max_s}: must not be below ALERT_RETRY_INITIAL_S="
                          f"{a.retry_initial_s}")
    return dataclasses.replace(a, methods=methods, telegram_api_url=a.telegram_api_url.rstrip("/"))


def load(environ: Mapping[str, str] | None = None, **overrides: Mapping[str, object]) -> AppConfig:
    """Builds the validated configuration: overrides (per section) > environment > defaults.

    load(os.environ, kafka={"topic": "x"}) overrides one field of one section.
    """
    environ = os.environ if environ is None else environ
    sections = {name: _section_from_env(cls, environ, overrides.get(name, {}))
                for name, cls in SECTIONS.items()}
    sections["detection"] = _validate_detection(sections["detection"])
    sections["kafka"] = _validate_kafka(sections["kafka"])
    sections["store"] = _validate_store(sections["store"])
    sections["live"] = _validate_live(sections["live"])
    sections["grafana"] = _validate_grafana(sections["grafana"])
    sections["alerts"] = _validate_alerts(sections["alerts"])
    return AppConfig(**sections)


def describe() -> str:
    """A table of every environment variable, its default and its meaning (README, --help)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            default = f.default
            if isinstance(default, tuple):
                default = ",".join(default)
            if isinstance(default, str) and default.startswith(PROJECT_DIR):
                default = "<project>" + default[len(PROJECT_DIR):]
            shown = f"`{default}`" if default != "" else "(empty)"
            lines.append(f"| `{f.metadata['env']}` | {shown} | {f.metadata['help']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
