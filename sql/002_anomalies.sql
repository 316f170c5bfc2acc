-- One row per detected anomaly and method. Same replay-safe key design as trades.
CREATE TABLE IF NOT EXISTS anomalies
(
    symbol      LowCardinality(String),
    trade_id    UInt64                CODEC(Delta, ZSTD(1)),
    trade_time  DateTime64(3, 'UTC')  CODEC(Delta, ZSTD(1)),
    method      LowCardinality(String),
    price       Float64               CODEC(ZSTD(1)),
    score       Float64               CODEC(ZSTD(1)),
    threshold   Float64               CODEC(ZSTD(1)),
    severity    LowCardinality(String),
    reason      String                CODEC(ZSTD(3)),
    z_price     Float64               CODEC(ZSTD(1)),
    z_return    Float64               CODEC(ZSTD(1)),
    log_return  Float64               CODEC(ZSTD(1)),
    detected_at DateTime64(3, 'UTC')  DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(detected_at)
PARTITION BY toDate(trade_time)
ORDER BY (symbol, trade_time, trade_id, method)
