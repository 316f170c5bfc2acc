-- Messages the job could not use, kept whole with the reason, never dropped.
-- Content-addressed: the key is the stage, the reason and a hash of the raw message, so replaying
-- the same input does not duplicate dead letters; the job's dead_letters metric counts every
-- receipt. Not partitioned by day: a bad message has no trustworthy time of its own, and a
-- received-at partition would stop a replay on another day from collapsing onto the first.
CREATE TABLE IF NOT EXISTS dead_letters
(
    stage       LowCardinality(String),
    reason      String                CODEC(ZSTD(3)),
    raw         String                CODEC(ZSTD(3)),
    raw_hash    UInt64 MATERIALIZED cityHash64(raw),
    symbol      LowCardinality(String),
    trade_id    Int64                 CODEC(ZSTD(1)),
    received_at DateTime64(3, 'UTC')  CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY (stage, reason, raw_hash)
