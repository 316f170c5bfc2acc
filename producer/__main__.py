"""Command line of the producer.

    python -m producer live [--symbols BTCUSDT,ETHUSDT|*] [--ws-url URL] [--rest-url URL] [--create-topics]
    python -m producer replay FILE... [--speed max|1|10 | --rate N] [--symbol S] [--create-topic]
    python -m producer create-topic [--recreate]
    python -m producer derive --candles F --symbol S --start ISO --end ISO --trades N --seed N --out F

Kafka settings default to the environment (KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC,
KAFKA_TOPIC_PARTITIONS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*; see `python config.py`).
The live command stops gracefully on SIGINT or SIGTERM, flushing Kafka.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import config as app_config
from config import ConfigError
from producer.batching import MessageBatcher
from producer.binance_rest import RestError
from producer.derive import epoch_ms, derive_trades, read_candles, write_binance_csv
from producer.publisher import PublishError, Publisher, create_topic
from producer.replay import merged_records, replay
from producer.sources import SourceError

log = logging.getLogger("producer")


def _speed(text: str) -> float | None:
    if text in ("max", "0"):
        return None
    value = float(text.rstrip("x"))
    if value <= 0:
        raise argparse.ArgumentTypeError("speed must be positive, or 'max'")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("rate must be positive")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m producer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    kafka = argparse.ArgumentParser(add_help=False)
    kafka.add_argument("--bootstrap-servers", help="[KAFKA_BOOTSTRAP_SERVERS]")
    kafka.add_argument("--topic", help="[KAFKA_TOPIC]")
    kafka.add_argument("--partitions", type=int, help="partitions for a created topic [KAFKA_TOPIC_PARTITIONS]")
    kafka.add_argument("--message-trades", type=int, metavar="N",
                       help="most trades of a symbol per message; 1 = one trade per message [KAFKA_MESSAGE_TRADES]")
    kafka.add_argument("--message-linger-ms", type=int, metavar="MS",
                       help="how long a trade waits for others of its symbol [KAFKA_MESSAGE_LINGER_MS]")
    commands = parser.add_subparsers(dest="command", required=True)

    rp = commands.add_parser("replay", parents=[kafka], help="publish recorded trades (Binance CSV/.gz/.zip, JSON lines)")
    rp.add_argument("files", nargs="+")
    rp.add_argument("--symbol", help="symbol of CSV files whose name does not say it")
    rp.add_argument("--speed", type=_speed, default=None,
                    help="1 = recorded pace, 10 = ten times faster, max = as fast as possible (default)")
    rp.add_argument("--rate", type=_rate, metavar="N",
                    help="N trades per second of wall time, whatever the trade times (overrides --speed)")
    rp.add_argument("--create-topic", action="store_true", help="create the topic first if it is missing")
    rp.add_argument("--recreate-topic", action="store_true", help="delete and create the topic first")

    lv = commands.add_parser(
        "live", parents=[kafka], help="stream Binance trades into Kafka (websocket, gaps backfilled, metrics)",
        description="Streams the trade streams of SYMBOLS from Binance's combined-stream websocket into "
                    "KAFKA_TOPIC. Gaps go to KAFKA_GAPS_TOPIC, malformed frames to KAFKA_DEAD_LETTER_TOPIC; "
                    "/metrics, /healthz and /readyz on LIVE_METRICS_PORT. Every WS_*, LIVE_* and BINANCE_* "
                    "variable of `python config.py` applies.")
    lv.add_argument("--symbols", help="comma-separated, or '*' for every LIVE_QUOTE_ASSET pair [SYMBOLS]")
    lv.add_argument("--ws-url", help="[BINANCE_WS_URL]")
    lv.add_argument("--rest-url", help="empty = no REST (no exchangeInfo, no backfill) [BINANCE_REST_URL]")
    lv.add_argument("--metrics-port", type=int, help="0 = off [LIVE_METRICS_PORT]")
    lv.add_argument("--create-topics", action="store_true",
                    help="create the trades, dead-letter and gaps topics first if they are missing")
    lv.add_argument("--run-for", type=float, help="stop after this many seconds (tests, trials)")

    ct = commands.add_parser("create-topic", parents=[kafka], help="create the topic")
    ct.add_argument("--recreate", action="store_true", help="delete it first (drops its data)")

    dv = commands.add_parser("derive", help="derive trades from real 1-minute candles (see producer/derive.py)")
    dv.add_argument("--candles", required=True)
    dv.add_argument("--start", help="first candle, ISO time (UTC)")
    dv.add_argument("--end", help="end (exclusive), ISO time (UTC)")
    dv.add_argument("--trades", type=int, required=True, help="total trades to derive")
    dv.add_argument("--seed", type=int, default=7)
    dv.add_argument("--scale", type=float, default=1.0, help="price multiplier (volume divided by it)")
    dv.add_argument("--first-id", type=int, default=1)
    dv.add_argument("--out", required=True, help="output Binance trades CSV (.csv or .csv.gz)")
    return parser.parse_args(argv)


def run_replay(args, kafka) -> int:
    if args.create_topic or args.recreate_topic:
        create_topic(kafka, recreate=args.recreate_topic)
    publisher = Publisher(kafka)
    started = time.monotonic()
    try:
        batcher = MessageBatcher(kafka.message_trades, kafka.message_linger_ms / 1000)
        count = replay(merged_records(args.files, args.symbol), publisher, args.speed, rate=args.rate,
                       batcher=batcher)
    finally:
        publisher.close()
    elapsed = time.monotonic() - started
    per_symbol = ", ".join(f"{s} {n}" for s, n in sorted(publisher.sent.items()))
    log.info("published %d trades in %d messages to %s in %.1f s (%.0f trades/s): %s; acknowledged %d, failed %d",
             count, publisher.messages, kafka.topic, elapsed, count / max(elapsed, 1e-9), per_symbol,
             publisher.acked, publisher.failed)
    return 0 if publisher.failed == 0 and publisher.acked == count else 1


def run_live(args) -> int:
    from producer.live_main import run
    return run(args)


def run_derive(args) -> int:
    start = epoch_ms(args.start) if args.start else None
    end = epoch_ms(args.end) if args.end else None
    candles = read_candles(args.candles, start, end)
    if not candles:
        log.error("no candles in %s between %s and %s", args.candles, args.start, args.end)
        return 1
    rows = derive_trades(candles, args.trades, args.seed, args.first_id, args.scale)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_binance_csv(rows, args.out)
    log.info("derived %d trades from %d candles of %s into %s (seed %d, scale %g)", len(rows), len(candles),
             args.candles, args.out, args.seed, args.scale)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection at INFO
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "derive":
            return run_derive(args)
        if args.command == "live":
            return run_live(args)
        kafka = app_config.load(kafka={"bootstrap_servers": args.bootstrap_servers, "topic": args.topic,
                                       "partitions": args.partitions, "message_trades": args.message_trades,
                                       "message_linger_ms": args.message_linger_ms}).kafka
        if args.command == "create-topic":
            create_topic(kafka, recreate=args.recreate)
            return 0
        return run_replay(args, kafka)
    except (ConfigError, SourceError, PublishError, RestError) as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
