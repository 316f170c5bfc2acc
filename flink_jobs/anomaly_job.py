"""The streaming job: Kafka trades -> parse -> key by symbol -> rolling z-score -> ClickHouse.

    Kafka source (raw message bytes)
      -> ParseTradeBatches      Arrow batches of messages -> one record per symbol and batch;
                                invalid messages -> dead letters (flink_jobs/parse_batches.py)
      -> event-time watermarks  (trade time, bounded out-of-orderness), key by symbol, in Java
      -> ScoreTrades            keyed state: rolling features; z-score and ONNX Isolation Forest in
                                micro-batches per subtask; 1 s and 1 min OHLCV bars (event time)
         candidates -> key by symbol, in Java -> ApplyCooldown   per symbol and method
      -> union(dead letters) -> key by sink key, in Java
      -> StoreSink              batched, idempotent inserts into trades/anomalies/dead_letters/bars
                                (trades inserted by ScoreTrades itself where the store allows it:
                                STORE_TRADES_FROM_SCORING, scoring_writes_trades)
         anomalies -> key_by(symbol) -> AlertSink   Telegram/Slack, when configured (flink_jobs/alerts/)

Runs in a local MiniCluster:    python flink_jobs/anomaly_job.py --bounded
and on a cluster:               flink run -py flink_jobs/anomaly_job.py -pyexec <python> -- --bounded
Every option defaults to its environment variable (see `python config.py`), then to config.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

if __package__ in (None, ""):
    # Run as a script (python flink_jobs/anomaly_job.py, flink run -py ...): make the project importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import config as app_config  # noqa: E402
from config import PROJECT_DIR, AppConfig, ConfigError, JobConfig  # noqa: E402

log = logging.getLogger("flink_jobs.anomaly_job")
JOB_NAME = "crypto-anomaly-detector"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="anomaly_job.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers [KAFKA_BOOTSTRAP_SERVERS]")
    parser.add_argument("--topic", help="topic of raw trades [KAFKA_TOPIC]")
    parser.add_argument("--group-id", help="consumer group id [KAFKA_GROUP_ID]")
    parser.add_argument("--starting-offsets", choices=("earliest", "latest", "committed"),
                        help="where to start without a checkpoint [KAFKA_STARTING_OFFSETS]")
    parser.add_argument("--source", choices=("kafka", "files"), default="kafka",
                        help="kafka (default), or files: JSON lines of trade messages given with --input, "
                             "read once (backtests without a broker)")
    parser.add_argument("--input", action="append", default=[], metavar="PATH",
                        help="with --source files: a JSON-lines file or folder (repeatable)")
    parser.add_argument("--bounded", action="store_true", default=None,
                        help="stop at the end offsets seen at start [JOB_BOUNDED]")
    parser.add_argument("--parallelism", type=int, help="operator parallelism [FLINK_PARALLELISM]")
    parser.add_argument("--checkpoint-interval-ms", type=int, help="[CHECKPOINT_INTERVAL_MS]")
    parser.add_argument("--sink", choices=("chdb", "clickhouse"),
                        help="store backend; 'clickhouse' needs --clickhouse-url [CLICKHOUSE_URL, else chdb]")
    parser.add_argument("--clickhouse-url", help="ClickHouse server URL [CLICKHOUSE_URL]")
    parser.add_argument("--chdb-path", help="embedded store directory [CHDB_PATH]")
    parser.add_argument("--run-report", metavar="FILE",
                        help="bounded runs: write wall and net runtime as JSON to FILE (for summaries)")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> AppConfig:
    store = {"chdb_path": args.chdb_path, "clickhouse_url": args.clickhouse_url}
    if args.sink == "chdb":
        store["clickhouse_url"] = ""
    elif args.sink == "clickhouse" and not (args.clickhouse_url or os.environ.get("CLICKHOUSE_URL")):
        raise ConfigError("--sink clickhouse needs --clickhouse-url or CLICKHOUSE_URL")
    return app_config.load(
        kafka={"bootstrap_servers": args.bootstrap_servers, "topic": args.topic, "group_id": args.group_id,
               "starting_offsets": args.starting_offsets},
        job={"bounded": args.bounded, "parallelism": args.parallelism,
             "checkpoint_interval_ms": args.checkpoint_interval_ms},
        store=store)


def connector_jar_urls(setting: str) -> list[str]:
    """FLINK_CONNECTOR_JARS (a directory or ';'-separated jar files) -> file:// URLs."""
    if not setting:
        return []
    if os.path.isdir(setting):
        paths = sorted(os.path.join(setting, n) for n in os.listdir(setting) if n.endswith(".jar"))
    else:
        paths = [p for p in setting.split(";") if p]
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or missing:
        raise ConfigError(f"FLINK_CONNECTOR_JARS={setting!r}: no connector jars there "
                          f"(run `make setup`, or set it empty when they are on Flink's classpath)")
    return ["file://" + os.path.abspath(p) for p in paths]


def package_python_files() -> str:
    """config.py, the flink_jobs package and sql/ in one zip, for the Python workers.

    Flink puts a shipped zip's root on the workers' sys.path, so `import flink_jobs.operators`
    works wherever they run. A shipped directory is itself put on sys.path (only `import
    operators` would work), which goes unnoticed as long as the workers' cwd is the project root.
    The zip's root is the workers' PROJECT_DIR (config.py is there), so store.SQL_DIR needs sql/ in it.
    """
    import atexit
    import tempfile
    import zipfile

    fd, path = tempfile.mkstemp(prefix="anomaly-job-", suffix=".zip")
    os.close(fd)
    atexit.register(lambda: os.path.exists(path) and os.remove(path))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(os.path.join(PROJECT_DIR, "config.py"), "config.py")
        for top, suffix in (("flink_jobs", ".py"), ("models", ".py"), ("sql", ".sql")):
            for root, dirs, files in os.walk(os.path.join(PROJECT_DIR, top)):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(files):
                    if name.endswith(suffix):
                        full = os.path.join(root, name)
                        zf.write(full, os.path.relpath(full, PROJECT_DIR))
    return path


def check_model(cfg: AppConfig) -> None:
    """Methods iforest and combined need a model: fail before submitting, not in the workers."""
    if not cfg.detection.needs_model:
        return
    from flink_jobs.detectors.iforest import IncompatibleModel
    from models.registry import RegistryError, load_usable

    try:
        model = load_usable(cfg.detection.model_registry, cfg.detection.model_version)
    except (RegistryError, IncompatibleModel) as error:
        raise ConfigError(f"MODEL_REGISTRY={cfg.detection.model_registry}: {error} "
                          f"(or set DETECTION_METHODS=zscore)") from None
    log.info("scoring with model %s from %s%s", model.version, cfg.detection.model_registry,
             " (following LATEST)" if cfg.detection.model_version == "latest" else "")


def recovery_settings(job: JobConfig) -> dict[str, str]:
    """Flink settings for checkpoints a job can resume from and for restarts after a failure
    (docs/reliability.md). Unset ones stay the cluster's."""
    settings = {"execution.checkpointing.externalized-checkpoint-retention": job.checkpoint_retention}
    if job.checkpoint_dir:
        settings.update({"execution.checkpointing.storage": "filesystem",
                         "execution.checkpointing.dir": job.checkpoint_dir})
    if job.restart_strategy:
        settings["restart-strategy.type"] = job.restart_strategy
    if job.restart_strategy == "fixed-delay":
        settings.update({"restart-strategy.fixed-delay.attempts": str(job.restart_attempts),
                         "restart-strategy.fixed-delay.delay": f"{job.restart_delay_ms} ms"})
    elif job.restart_strategy == "exponential-delay":
        settings.update({"restart-strategy.exponential-delay.initial-backoff": f"{job.restart_delay_ms} ms",
                         "restart-strategy.exponential-delay.max-backoff": "1 min",
                         "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
                         "restart-strategy.exponential-delay.reset-backoff-threshold": "1 h",
                         "restart-strategy.exponential-delay.attempts-before-reset-backoff":
                             str(job.restart_attempts)})
    return settings


def create_environment(cfg: AppConfig):
    from pyflink.common import Configuration
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.util.java_utils import get_j_env_configuration

    local = "PYFLINK_GATEWAY_PORT" not in os.environ  # under `flink run` the client sets the gateway
    if local:
        # Read by PyFlink when the environment is created: in a local MiniCluster its default
        # ('loopback') runs every Python operator as a thread of this process, all under one GIL.
        # On a cluster the workers are processes, and PyFlink refuses 'loopback'.
        os.environ["_python_worker_execution_mode"] = cfg.job.python_workers
    env = StreamExecutionEnvironment.get_execution_environment()
    # Set on the environment's own configuration, which PyFlink hands to each Python operator
    # as it is created (a Configuration given to get_execution_environment is not guaranteed to
    # reach it under `flink run`). A Python operator passes its output on when its bundle ends:
    # at this many records or after this long; Flink's defaults (100,000 / 1 s) favour
    # throughput, latency needs a short time. The state cache must hold every symbol's state.
    j_conf = get_j_env_configuration(env._j_stream_execution_environment)
    j_conf.setString("python.fn-execution.bundle.size", str(cfg.job.python_bundle_size))
    j_conf.setString("python.fn-execution.bundle.time", str(cfg.job.python_bundle_time_ms))
    j_conf.setString("python.state.cache-size", str(cfg.job.python_state_cache_size))
    env.set_buffer_timeout(cfg.job.buffer_timeout_ms)
    env.set_parallelism(cfg.job.parallelism)
    env.enable_checkpointing(cfg.job.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    settings = Configuration()
    for key, value in recovery_settings(cfg.job).items():
        settings.set_string(key, value)
    env.configure(settings)
    jars = connector_jar_urls(cfg.job.connector_jars)
    if jars:
        env.add_jars(*jars)
    # The Python workers import the job's modules from these shipped files, wherever they run.
    env.add_python_file(package_python_files())
    if local:
        # Local MiniCluster: workers use this interpreter (with its venv), not `python` from PATH.
        # Under `flink run` the gateway is set and -pyexec / python.executable decide.
        env.set_python_executable(sys.executable)
    return env


def starting_offsets(name: str):
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer
    from pyflink.java_gateway import get_gateway

    if name == "earliest":
        return KafkaOffsetsInitializer.earliest()
    if name == "latest":
        return KafkaOffsetsInitializer.latest()
    # PyFlink's committed_offsets() names the reset strategy by its class in the shaded SQL
    # connector jar; with the plain connector jars the class is kafka-clients' own.
    jvm = get_gateway().jvm
    reset = jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy.EARLIEST
    j_initializer = (jvm.org.apache.flink.connector.kafka.source.enumerator.initializer
                     .OffsetsInitializer.committedOffsets(reset))
    return KafkaOffsetsInitializer(j_initializer)


def kafka_source(cfg: AppConfig):
    from pyflink.common.serialization import ByteArraySchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource

    from producer.kafka_settings import job_consumer_properties

    starting = starting_offsets(cfg.kafka.starting_offsets)
    # Raw bytes, not SimpleStringSchema: Java would replace bytes that are not UTF-8 and the job
    # could accept a message that is not valid JSON; the parser decodes strictly and says why not.
    builder = (KafkaSource.builder()
               .set_bootstrap_servers(cfg.kafka.bootstrap_servers)
               .set_topics(cfg.kafka.topic)
               .set_group_id(cfg.kafka.group_id)
               .set_starting_offsets(starting)
               .set_value_only_deserializer(ByteArraySchema())
               .set_properties(job_consumer_properties(cfg.kafka))   # TLS/SASL as the producer's, fetch sizes
               .set_property("commit.offsets.on.checkpoint", "true"))
    if cfg.job.bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


def file_source(paths: list[str]):
    """Bounded text-line source over JSON-lines files: the same messages the Kafka topic carries."""
    from pyflink.datastream.connectors.file_system import FileSource, StreamFormat

    return FileSource.for_record_stream_format(
        StreamFormat.text_line_format(), *[os.path.abspath(p) for p in paths]).build()


def keyed_by_symbol(parsed, watermarks, parallelism: int):
    """(Row(symbol, pickled trades), event time) pairs -> a stream keyed by symbol, in event time.

    All in Java, chained behind the parser: the timestamp assigner and watermarks, a map that
    drops the timestamp, and a key selector that reads the symbol from field 0. PyFlink's own
    key_by would add a Python operator for the key (one more crossing between Java and Python
    for every record), and assign_timestamps_and_watermarks with a Python TimestampAssigner one
    more behind a rebalance that reorders a symbol's trades. The keyed Python operator receives
    Row(key, value) records as PyFlink's key_by makes them, and its functions get the value: a
    symbol's trades of one parse batch.
    """
    from pyflink.common import Types
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    from flink_jobs.operators import KEYED_TRADE_TYPE

    jvm = get_gateway().jvm
    python_eventtime = jvm.org.apache.flink.streaming.api.functions.python.eventtime
    j_timed = (parsed._j_data_stream
               .assignTimestampsAndWatermarks(
                   watermarks._j_watermark_strategy.withTimestampAssigner(python_eventtime.CustomTimestampAssigner()))
               .name("trade-time-watermarks").uid("trade-time-watermarks").setParallelism(parallelism)
               .map(python_eventtime.RemoveTimestampMapFunction(), KEYED_TRADE_TYPE.get_java_type_info())
               .name("drop-timestamp").uid("drop-timestamp").setParallelism(parallelism))
    j_keyed = j_timed.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, Types.PICKLED_BYTE_ARRAY(), parsed)


def parse_in_batches(env, raw, cfg: AppConfig, parallelism: int, sink_parallelism: int):
    """Raw messages -> (trades, dead letters) (flink_jobs/parse_batches.py).

    Trades leave as (Row(symbol, pickled trades), event time) records, one per symbol and Arrow
    batch, for the timestamp assigner; dead letters as pickled store records, before it, as the
    per-message parser's side output did: a partition carrying nothing but bad messages still
    goes idle instead of holding the watermark, and with it every bar, back.

    The messages cross into Python in Arrow batches (a vectorized scalar function of the Table
    API) instead of one record each. The Table operators run at the source's parallelism and
    chain to it: a rebalance in between would interleave a symbol's messages from two readers.
    """
    from pyflink.common import Types
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway
    from pyflink.table import DataTypes, StreamTableEnvironment
    from pyflink.table.expressions import col, lit, row
    from pyflink.table.udf import udf

    from flink_jobs.operators import PARSED_TYPE, PICKLED_KEYED_TYPE, ParseTradeBatches, pickled_sink_key
    from flink_jobs.parse_batches import DEAD_LETTER_KEY

    job_parallelism = env.get_parallelism()
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.resource.default-parallelism", str(parallelism))
    # Messages per Arrow batch: a symbol's trades of a batch cross to scoring as one record. A
    # bundle's end sends a partial batch, so PYTHON_BUNDLE_TIME_MS still bounds the wait.
    t_env.get_config().set("python.fn-execution.arrow.batch.size",
                           str(min(cfg.job.python_arrow_batch_size, cfg.job.python_bundle_size)))
    parse = udf(ParseTradeBatches(cfg.detection), func_type="pandas", result_type=DataTypes.ROW([
        DataTypes.FIELD("key", DataTypes.STRING()), DataTypes.FIELD("payload", DataTypes.BYTES()),
        DataTypes.FIELD("event_time", DataTypes.BIGINT())]))
    rows = (t_env.from_data_stream(raw)
            .select(parse(col("f0")).alias("parsed"))
            .select(col("parsed").get("key").alias("key"), col("parsed").get("payload").alias("payload"),
                    col("parsed").get("event_time").alias("event_time"))
            .where(col("payload").is_not_null))
    # Into a stream once, and back: each conversion of a table to a stream is planned on its own,
    # so the two below would each run the Python function over every message.
    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    parsed = t_env.from_data_stream(t_env.to_append_stream(
        rows, Types.ROW_NAMED(["key", "payload", "event_time"], [Types.STRING(), bytes_type, Types.LONG()])))
    trades = t_env.to_append_stream(
        parsed.where(col("key") != DEAD_LETTER_KEY).select(row(col("key"), col("payload")), col("event_time")),
        PARSED_TYPE)
    # Dead letters go to the store as Row(sink key, record), as scoring's records do, with the key
    # their first column (the stage, "parse") gives.
    dead_letter_key = pickled_sink_key("parse", sink_parallelism)
    j_letters = t_env.to_append_stream(
        parsed.where(col("key") == DEAD_LETTER_KEY).select(row(lit(dead_letter_key), col("payload")),
                                                           col("event_time")),
        Types.TUPLE([Types.ROW([bytes_type, bytes_type]), Types.LONG()]))._j_data_stream
    env.set_parallelism(job_parallelism)  # planning a conversion sets it to the tables' parallelism
    # The payload as what it is, a pickled store record (the same bytes, read by Python as pickled),
    # at the job's parallelism like the streams it joins on the way to the store.
    remove_time = get_gateway().jvm.org.apache.flink.streaming.api.functions.python.eventtime \
        .RemoveTimestampMapFunction()
    dead_letters = DataStream(j_letters.map(remove_time, PICKLED_KEYED_TYPE.get_java_type_info())
                              .name("dead-letters").setParallelism(job_parallelism))
    return trades, dead_letters


def keyed_by_first_field(records):
    """Row(key, value) records, both fields pickled -> a stream keyed by the key, in Java.

    Scoring sends its candidates that way (key: the symbol), and scoring, the cooldown and the
    parser's dead letters their store records (key: the sink key). PyFlink's key_by would run its
    key selector in Python: in front of the store sink, behind the union, as a Python operator of
    its own, one more hop between Python operators on every trade's way to the store. The key
    type is the one that key_by used, so savepoints of earlier versions restore.
    """
    from pyflink.common import Types
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    from flink_jobs.operators import PICKLED_KEY_TYPE

    j_keyed = records._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(), PICKLED_KEY_TYPE.get_java_type_info())
    return KeyedStream(j_keyed, Types.PICKLED_BYTE_ARRAY(), records)


def scoring_writes_trades(cfg: AppConfig) -> bool:
    """Whether the scoring operator inserts the trades rows itself (STORE_TRADES_FROM_SCORING):
    every scoring subtask may write to a ClickHouse server; chDB has one owner per directory, which
    at parallelism 1 is the one Python worker that runs both scoring and the store sink. Each hop
    from one Python operator to the next costs a trade 57-150 ms at 5,000 trades/s
    (docs/performance.md, "Seventh round")."""
    return cfg.job.trades_from_scoring and (cfg.store.backend == "clickhouse" or cfg.job.parallelism == 1)


def trade_time_watermarks(job: JobConfig):
    """Event time from the trades, bounded out of order by MAX_OUT_OF_ORDERNESS_MS."""
    from pyflink.common import Duration, WatermarkStrategy

    watermarks = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(job.max_out_of_orderness_ms))
    if job.idle_timeout_ms:
        # A subtask whose partitions carry no trades would hold the watermark, and so every bar,
        # back for ever; idle, it is left out of the minimum.
        watermarks = watermarks.with_idleness(Duration.of_millis(job.idle_timeout_ms))
    return watermarks


def build_pipeline(env, cfg: AppConfig, inputs: list[str] | None = None) -> None:
    from pyflink.common import WatermarkStrategy

    from flink_jobs.alerts.sink import describe_alerting
    from flink_jobs.operators import ALERTS, CANDIDATES, PICKLED_KEYED_TYPE, ApplyCooldown, ScoreTrades, StoreSink

    # Every stateful operator has a fixed uid, so a savepoint or retained checkpoint maps onto the
    # job again after its code changed (flink run -s; docs/reliability.md).
    # Parsing runs at the source's parallelism, chained to it: a rebalance in between would
    # interleave a symbol's trades from two parsers and break their order before key_by.
    if inputs:
        # One file reader, so that each symbol's trades keep their file order.
        source_parallelism = 1
        raw = env.from_source(file_source(inputs), WatermarkStrategy.no_watermarks(), "file-trades")
    else:
        source_parallelism = cfg.job.parallelism
        raw = env.from_source(kafka_source(cfg), WatermarkStrategy.no_watermarks(), "kafka-trades")
    raw = raw.uid("source").set_parallelism(source_parallelism)
    # chDB allows one owner per directory, so the embedded store gets one writer; a server scales out.
    sink_parallelism = 1 if cfg.store.backend == "chdb" else cfg.job.parallelism
    parsed, dead_letters = parse_in_batches(env, raw, cfg, source_parallelism, sink_parallelism)
    writer = scoring_writes_trades(cfg)
    scored = (keyed_by_symbol(parsed, trade_time_watermarks(cfg.job), source_parallelism)
              .process(ScoreTrades(cfg.detection, bars=cfg.job.bars, sink_parallelism=sink_parallelism,
                                   store=cfg.store if writer else None),
                       output_type=PICKLED_KEYED_TYPE)
              .name("features-and-scoring").uid("features-and-scoring"))
    anomalies = (keyed_by_first_field(scored.get_side_output(CANDIDATES))
                 .process(ApplyCooldown(cfg.detection, alerts=cfg.alerts.enabled, sink_parallelism=sink_parallelism),
                          output_type=PICKLED_KEYED_TYPE)
                 .name("cooldown").uid("cooldown"))
    (keyed_by_first_field(scored.union(anomalies, dead_letters))
     .process(StoreSink(cfg.store)).name(f"store-sink-{cfg.store.backend}").uid("store-sink")
     .set_parallelism(sink_parallelism))
    log.info("trades rows: %s", "inserted by the scoring operator" if writer else "through the store sink")
    log.info("%s", describe_alerting(cfg.alerts))
    if cfg.alerts.enabled:
        from flink_jobs.alerts.sink import AlertSink

        # One subtask: the rate limit is the job's, and anomalies are few (one per symbol and
        # method per COOLDOWN_SECONDS at most).
        (anomalies.get_side_output(ALERTS)
         .key_by(lambda alert: alert.symbol)
         .process(AlertSink(cfg.alerts)).name("alerts").uid("alerts")
         .set_parallelism(1))


def configure_logging(level: str) -> None:
    """The job's own loggers get their own handler: PyFlink lowers the root logger to WARNING when
    the environment starts, and Beam replaces the root handlers while a local job runs."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    job_logger = logging.getLogger("flink_jobs")
    job_logger.addHandler(handler)
    job_logger.setLevel(level)
    job_logger.propagate = False
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # import-time chatter


def main(argv: list[str] | None = None, build=build_pipeline) -> int:
    """`build` lays out the job on the environment (bench/floor_job.py gives its own)."""
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args)
        check_model(cfg)
        env = create_environment(cfg)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        return 2
    if args.source == "files" and not args.input:
        log.error("configuration error: --source files needs --input PATH")
        return 2
    build(env, cfg, args.input if args.source == "files" else None)
    source = (f"files {', '.join(args.input)}" if args.source == "files" else
              f"topic {cfg.kafka.topic} at {cfg.kafka.bootstrap_servers}, group {cfg.kafka.group_id}")
    log.info("starting %s: %s, %s, parallelism %d, checkpoints every %d ms, store %s", JOB_NAME, source,
             "bounded" if cfg.job.bounded or args.source == "files" else "unbounded", cfg.job.parallelism,
             cfg.job.checkpoint_interval_ms, cfg.store.backend)
    started = time.monotonic()
    result = env.execute(JOB_NAME)
    # A detached submission (flink run -d) returns at once, without the job's runtime.
    detached = not result._j_job_execution_result.isJobExecutionResult()
    if detached:
        log.info("submitted detached as job %s", result.get_job_id())
    elif cfg.job.bounded or args.source == "files":
        report = {"job_id": str(result.get_job_id()), "wall_seconds": round(time.monotonic() - started, 3),
                  "net_runtime_seconds": result.get_net_runtime() / 1000.0}
        log.info("job finished: %.1f s wall, %.1f s net runtime (job id %s)", report["wall_seconds"],
                 report["net_runtime_seconds"], report["job_id"])
        if args.run_report:
            with open(args.run_report, "w", encoding="utf-8") as handle:
                json.dump(report, handle)
    return 0


def exit_without_finalizers(code: int) -> None:
    """Ends the process without Python's interpreter shutdown. In a local MiniCluster the
    embedded store lived in this process (the sink's thread): after the job had finished and the
    store was closed, chDB's background threads were seen to crash the interpreter's shutdown
    (SIGSEGV in a BgSchPool thread of _chdb.abi3.so), turning a complete run into exit status
    -11. Everything the job wrote is in the store by then; only the exit is cut short."""
    import atexit

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # our own clean-ups (the shipped zip), which os._exit would skip
    os._exit(code)


if __name__ == "__main__":
    exit_without_finalizers(main())
