"""Binance REST, the two public endpoints the live producer needs, with the standard library only.

- GET /api/v3/exchangeInfo: which symbols trade (for SYMBOLS='*' and to check a configured list);
- GET /api/v3/historicalTrades?symbol=S&fromId=N&limit=L: trades by id, to backfill a gap.
  Market data, no API key (https://developers.binance.com/docs/binance-spot-api-docs/rest-api).
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from flink_jobs.trades import normalize_epoch_ms
from producer.gaps import Out

log = logging.getLogger(__name__)

TRADES_PER_REQUEST = 1000   # Binance's limit for historicalTrades


class RestError(RuntimeError):
    pass


class BinanceRest:
    def __init__(self, base_url: str, timeout_s: float = 5.0, max_bytes: int = 32 * 1024 * 1024):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def _get(self, path: str, **params) -> object:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = response.read(self.max_bytes + 1)   # never more than the bound into memory
            if len(body) > self.max_bytes:
                raise RestError(f"GET {url}: answer larger than BINANCE_REST_MAX_BYTES={self.max_bytes}")
            return json.loads(body)
        except (urllib.error.URLError, OSError, ValueError, RecursionError) as error:
            raise RestError(f"GET {url}: {error}") from None

    def trading_symbols(self, quote_asset: str | None = None) -> list[str]:
        """Symbols whose status is TRADING (spot), optionally only those quoted in quote_asset."""
        info = self._get("/api/v3/exchangeInfo")
        if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
            raise RestError("exchangeInfo: no symbols list in the answer")
        return sorted(s["symbol"] for s in info["symbols"]
                      if s.get("status") == "TRADING" and (quote_asset is None or s.get("quoteAsset") == quote_asset))

    def historical_trades(self, symbol: str, from_id: int, limit: int = TRADES_PER_REQUEST) -> list[dict]:
        answer = self._get("/api/v3/historicalTrades", symbol=symbol, fromId=from_id,
                           limit=min(limit, TRADES_PER_REQUEST))
        if not isinstance(answer, list):
            raise RestError(f"historicalTrades {symbol} fromId={from_id}: not a list: {str(answer)[:200]}")
        return answer

    def trades_between(self, symbol: str, first_id: int, last_id: int) -> list[Out]:
        """Every trade first_id..last_id that REST still has, as websocket-shaped messages, in id order."""
        trades: list[Out] = []
        next_id = first_id
        while next_id <= last_id:
            page = self.historical_trades(symbol, next_id, last_id - next_id + 1)
            if not page:
                break
            for row in page:
                if first_id <= row["id"] <= last_id:
                    trades.append(Out(symbol, row["id"], rest_trade_message(symbol, row)))
            next_id = page[-1]["id"] + 1
        return trades


def rest_trade_message(symbol: str, row: dict) -> str:
    """A REST trade row in the websocket trade shape the Flink job parses (prices kept as Binance's strings).
    REST has no event time: the trade time stands in for it."""
    time_ms = normalize_epoch_ms(int(row["time"]))
    message = {"e": "trade", "E": time_ms, "s": symbol, "t": row["id"], "p": row["price"], "q": row["qty"],
               "T": time_ms, "m": row["isBuyerMaker"], "M": row.get("isBestMatch", True)}
    return json.dumps(message, separators=(",", ":"))


def resolve_symbols(configured: tuple, rest: BinanceRest | None, quote_asset: str) -> list[str]:
    """The symbols to stream: '*' = every trading pair in quote_asset (needs REST); an explicit list is
    checked against exchangeInfo when it is reachable, and kept as is when it is not."""
    if "*" in configured:
        if rest is None:
            raise RestError("SYMBOLS='*' needs BINANCE_REST_URL to list the trading pairs")
        return rest.trading_symbols(quote_asset)
    symbols = list(dict.fromkeys(configured))
    if rest is None:
        return symbols
    try:
        trading = set(rest.trading_symbols())
    except RestError as error:
        log.warning("exchangeInfo unreachable, streaming the configured symbols unchecked: %s", error)
        return symbols
    unknown = [s for s in symbols if s not in trading]
    if unknown:
        log.warning("not trading on this exchange, left out: %s", ",".join(unknown))
    return [s for s in symbols if s in trading]
