"""Readers of recorded trades, yielding (time_ms, symbol, message) in file order.

- Binance public-data trade files (data.binance.vision): CSV, .csv.gz or .zip, columns
  id, price, qty, quote_qty, time, is_buyer_maker, is_best_match, with or without a header,
  time in ms or µs. The symbol comes from the file name (BTCUSDT-trades-2024-01-01.zip) or --symbol.
- JSON lines of websocket trade messages ({"e":"trade",...} or the combined-stream envelope),
  plain or .gz. Lines are published as they are, malformed ones included: judging them is the
  job's work, and a replay must reproduce what the exchange sent.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import zipfile
from typing import Iterator, NamedTuple

from flink_jobs.trades import Trade, normalize_epoch_ms, to_message

SYMBOL_FROM_NAME = re.compile(r"^([A-Z0-9]{2,30})-(?:trades|aggTrades)-")
CSV_COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")


class SourceError(ValueError):
    pass


class Record(NamedTuple):
    time_ms: int
    symbol: str | None     # Kafka key; None when a malformed line does not say
    message: str           # the exact bytes to publish, as text


def _open_text(path: str) -> io.TextIOBase:
    if path.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if n.endswith(".csv")]
        if len(members) != 1:
            raise SourceError(f"{path}: expected one .csv inside the zip, found {members}")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def is_json_lines(path: str) -> bool:
    return bool(re.search(r"\.(jsonl|ndjson|json)(\.gz)?$", path))


def symbol_from_filename(path: str) -> str | None:
    match = SYMBOL_FROM_NAME.match(os.path.basename(path))
    return match.group(1) if match else None


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def read_binance_csv(path: str, symbol: str | None = None) -> Iterator[Record]:
    symbol = symbol or symbol_from_filename(path)
    if not symbol:
        raise SourceError(f"{path}: cannot tell the symbol from the file name; pass --symbol")
    with _open_text(path) as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if line_number == 1 and row[0].strip().lower() == "id":
                continue  # header
            try:
                trade = Trade(symbol, int(row[0]), float(row[1]), float(row[2]),
                              normalize_epoch_ms(int(row[4])), normalize_epoch_ms(int(row[4])),
                              _parse_bool(row[5]))
            except (ValueError, IndexError) as error:
                raise SourceError(f"{path}:{line_number}: not a Binance trade row ({error}): {row}") from None
            yield Record(trade.trade_time_ms, symbol, json.dumps(to_message(trade), separators=(",", ":")))


def read_json_lines(path: str) -> Iterator[Record]:
    last_time = 0
    with _open_text(path) as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if not line:
                continue
            symbol, time_ms = None, last_time
            try:
                payload = json.loads(line)
                if isinstance(payload, dict) and isinstance(payload.get("data"), dict):
                    payload = payload["data"]
                if isinstance(payload, dict):
                    symbol = payload.get("s") if isinstance(payload.get("s"), str) else None
                    if isinstance(payload.get("T"), int) and not isinstance(payload.get("T"), bool):
                        time_ms = normalize_epoch_ms(payload["T"])
            except ValueError:
                pass
            last_time = time_ms
            yield Record(time_ms, symbol, line)


def read_any(path: str, symbol: str | None = None) -> Iterator[Record]:
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file")
    return read_json_lines(path) if is_json_lines(path) else read_binance_csv(path, symbol)
