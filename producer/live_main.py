"""`python -m producer live`: configuration, symbol list, topics, signals, then LiveProducer until stopped."""
from __future__ import annotations

import logging
import os
import signal
import threading

import config as app_config
from producer.binance_rest import BinanceRest, resolve_symbols
from producer.kafka_settings import producer_settings, redacted
from producer.live import LiveProducer
from producer.publisher import create_topic

log = logging.getLogger("producer.live")


def load_config(args):
    environ = dict(os.environ)
    if args.symbols:
        environ["SYMBOLS"] = args.symbols
    live = {"ws_url": args.ws_url, "rest_url": args.rest_url, "metrics_port": args.metrics_port}
    return app_config.load(environ, kafka={"bootstrap_servers": args.bootstrap_servers, "topic": args.topic,
                                           "partitions": args.partitions, "message_trades": args.message_trades,
                                           "message_linger_ms": args.message_linger_ms}, live=live)


def run(args) -> int:
    cfg = load_config(args)
    log.info("kafka client settings: %s", redacted(producer_settings(cfg.kafka)))
    rest = BinanceRest(cfg.live.rest_url, cfg.live.rest_timeout_s, cfg.live.rest_max_bytes) if cfg.live.rest_url else None
    symbols = resolve_symbols(cfg.detection.symbols, rest, cfg.live.quote_asset)
    if not symbols:
        log.error("no symbols to stream")
        return 2
    if args.create_topics:
        for topic in (cfg.kafka.topic, cfg.kafka.dead_letter_topic, cfg.kafka.gaps_topic):
            create_topic(cfg.kafka, topic=topic)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: (log.info("signal %d: stopping", number), stop.set()))
    producer = LiveProducer(cfg, symbols, rest).start()
    try:
        stop.wait(args.run_for)
    finally:
        producer.stop()
    m = producer.metrics
    return 1 if m.value("dropped_total") or m.value("send_failed_total") else 0
