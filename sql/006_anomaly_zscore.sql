-- The z-score that decided: the strongest of the return, size and rate z-scores (signed like the
-- return), for every method's anomaly. `score` holds the forest's score for iforest rows and
-- `z_return` only the return's z-score, so a size or rate alert needs its own column.
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS zscore Float64 CODEC(ZSTD(1))
