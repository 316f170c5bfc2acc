"""A known input: real trades with planted price spikes, malformed messages and a repeat, plus
what the job must make of it, computed by the same plain-Python modules the job runs."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from config import load
from flink_jobs.detectors.offline import detect
from flink_jobs.trades import InvalidTrade, parse_trade
from producer.sources import read_any

from tests.conftest import sample_path

SYMBOLS = "ETHUSDT,XRPETH"
JOB_ENV = {"SYMBOLS": SYMBOLS, "COOLDOWN_SECONDS": "5", "ZSCORE_THRESHOLDS": "ETHUSDT=3.5,XRPETH=4.0"}
# (symbol, index in its file, price factor)
SPIKES = [("ETHUSDT", 300, 1.02), ("ETHUSDT", 700, 0.98), ("XRPETH", 1500, 1.03), ("XRPETH", 3500, 0.97)]
GOOD = {"e": "trade", "E": 1675329700000, "s": "ETHUSDT", "t": 99, "p": "1666.8", "q": "1.5",
        "T": 1675329700000, "m": False, "M": True}


def _bad(**changes) -> str:
    return json.dumps({**GOOD, **changes})


# (raw message, part of the reason the job must give)
MALFORMED = [
    ("{not json", "malformed JSON"),
    ("[1, 2, 3]", "not a JSON object"),
    ("{}", "missing fields"),
    ('{"e": "trade", "s": "ETHUSDT"}', "missing fields: t, p, q, T, m"),
    (_bad(p="NaN"), "price (p) is not finite"),
    (_bad(p=float("inf")), "price (p) is not finite"),
    (_bad(q="-3"), "quantity (q) must be positive"),
    (_bad(p="0"), "price (p) must be positive"),
    (_bad(t="99"), "trade id (t) must be an integer"),
    (_bad(s="DOGEUSDT"), "unknown symbol: DOGEUSDT"),
    (_bad(T=86_400_000), "trade time (T) is outside 2017-07-01 .. now+1 day: 86400000"),
    (_bad(e="aggTrade"), "unsupported event type"),
    (_bad(m="yes"), "must be true or false"),
    (_bad(s="ETHUSDT", note="x" * 20_000), "message too large"),
]
REPEAT_AFTER = ("ETHUSDT", 200, 100)  # after the 200th ETH trade, send the 100th again


@dataclass
class Expected:
    trades: dict = field(default_factory=dict)           # symbol -> count
    anomalies: set = field(default_factory=set)          # (symbol, trade_id, method)
    spikes: set = field(default_factory=set)             # (symbol, trade_id)
    dead_letters: list = field(default_factory=list)     # (stage, reason fragment, raw)


def build(path: str, model) -> Expected:
    """Writes the planted input as JSON lines to `path`; returns what the job must store, as the
    job's own detection code computes it without Flink (flink_jobs/detectors/offline.py)."""
    per_symbol = {
        "ETHUSDT": [json.loads(r.message) for r in read_any(sample_path("ETHUSDT-trades-2023-02-02.csv"))],
        "XRPETH": [json.loads(r.message) for r in read_any(sample_path("XRPETH-trades-2019-10-11.csv"))],
    }
    expected = Expected()
    for symbol, index, factor in SPIKES:
        message = per_symbol[symbol][index]
        message["p"] = repr(float(message["p"]) * factor)
        expected.spikes.add((symbol, message["t"]))

    lines = []
    malformed = iter(MALFORMED)
    for i in range(max(len(v) for v in per_symbol.values())):
        for symbol, messages in per_symbol.items():
            if i < len(messages):
                lines.append(json.dumps(messages[i]))
        if i % 50 == 25:
            bad = next(malformed, None)
            if bad:
                lines.append(bad[0])
                expected.dead_letters.append(("parse", bad[1], bad[0]))
        symbol, after, repeat = REPEAT_AFTER
        if i == after:
            lines.append(json.dumps(per_symbol[symbol][repeat]))
            expected.dead_letters.append(("detect", "repeated or out-of-order trade id", None))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")

    expected.trades, expected.anomalies = reference(lines, JOB_ENV, model)
    assert len(expected.dead_letters) == len(MALFORMED) + 1
    return expected


def reference(lines: list[str], job_env: dict, model) -> tuple[dict, set]:
    """(trades per symbol, {(symbol, trade_id, method)}) the job must store for these messages in
    this order, computed by the plain-Python reference (flink_jobs/detectors/offline.py)."""
    cfg = load(job_env).detection
    trades = []
    for line in lines:
        try:
            trades.append(parse_trade(line, cfg.accepts))
        except InvalidTrade:
            continue
    scored, anomalies = detect(trades, cfg, model)
    counts: dict = {}
    for trade, _, _ in scored:
        counts[trade.symbol] = counts.get(trade.symbol, 0) + 1
    return counts, {(a.trade.symbol, a.trade.trade_id, a.method) for a in anomalies}
