-- Detection engine: the Isolation Forest score and model version of every trade, and every
-- feature value of every anomaly. Additive and idempotent (IF NOT EXISTS), so stores created by
-- 001-003 upgrade in place.
ALTER TABLE trades ADD COLUMN IF NOT EXISTS if_score Float32 CODEC(ZSTD(1));
ALTER TABLE trades ADD COLUMN IF NOT EXISTS model_version LowCardinality(String);
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS if_score Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS model_version LowCardinality(String);
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS robust_z_return Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS price_change_pct Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS time_gap_sec Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS vwap_deviation_pct Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS volume_spike_ratio Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS price_velocity_pct_s Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS trade_rate_burst Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS buy_sell_imbalance Float64 CODEC(ZSTD(1))
;
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS volume_z Float64 CODEC(ZSTD(1));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS rate_z Float64 CODEC(ZSTD(1))
