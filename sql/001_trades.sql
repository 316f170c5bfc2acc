-- Every valid trade, enriched with the rolling statistics it was scored against.
-- ReplacingMergeTree on the sorting key (symbol, trade_time, trade_id): a trade written twice
-- (a replay, a restart from a checkpoint) collapses to one row at merge time; read with FINAL
-- (or GROUP BY the key) for exact counts before merges have run.
CREATE TABLE IF NOT EXISTS trades
(
    symbol         LowCardinality(String),
    trade_id       UInt64                CODEC(Delta, ZSTD(1)),
    trade_time     DateTime64(3, 'UTC')  CODEC(Delta, ZSTD(1)),
    event_time     DateTime64(3, 'UTC')  CODEC(Delta, ZSTD(1)),
    price          Float64               CODEC(Gorilla, ZSTD(1)),
    qty            Float64               CODEC(ZSTD(1)),
    quote_qty      Float64               CODEC(ZSTD(1)),
    is_buyer_maker Bool,
    log_return     Float64               CODEC(ZSTD(1)),
    price_mean     Float64               CODEC(Gorilla, ZSTD(1)),
    price_std      Float64               CODEC(ZSTD(1)),
    z_price        Float32               CODEC(ZSTD(1)),
    return_mean    Float64               CODEC(ZSTD(1)),
    return_std     Float64               CODEC(ZSTD(1)),
    z_return       Float32               CODEC(ZSTD(1)),
    ingested_at    DateTime64(3, 'UTC')  DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(trade_time)
ORDER BY (symbol, trade_time, trade_id)
