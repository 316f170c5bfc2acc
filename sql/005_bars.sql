-- OHLCV bars per symbol from event-time tumbling windows in the Flink job (1 s and 1 min).
-- Replay-safe like trades: a bar written again (replay, restart) collapses on its key.
CREATE TABLE IF NOT EXISTS bars
(
    symbol        LowCardinality(String),
    interval_s    UInt32,
    window_start  DateTime64(3, 'UTC')  CODEC(Delta, ZSTD(1)),
    open          Float64               CODEC(Gorilla, ZSTD(1)),
    high          Float64               CODEC(Gorilla, ZSTD(1)),
    low           Float64               CODEC(Gorilla, ZSTD(1)),
    close         Float64               CODEC(Gorilla, ZSTD(1)),
    volume        Float64               CODEC(ZSTD(1)),
    quote_volume  Float64               CODEC(ZSTD(1)),
    vwap          Float64               CODEC(Gorilla, ZSTD(1)),
    trade_count   UInt32                CODEC(ZSTD(1)),
    buy_volume    Float64               CODEC(ZSTD(1)),
    sell_volume   Float64               CODEC(ZSTD(1)),
    inserted_at   DateTime64(3, 'UTC')  DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toDate(window_start)
ORDER BY (symbol, interval_s, window_start)
