-- Stored anomalies of a trade-time range as the alert sink would see them
-- (python -m flink_jobs.alerts.preview). The z-score is the method's score, except for iforest rows,
-- whose score is the forest's: there the return z-score stands in.
SELECT
    symbol, trade_id, toUnixTimestamp64Milli(trade_time) AS trade_time_ms, method, severity, price,
    price_change_pct, if(method = 'iforest', z_return, score) AS zscore, if_score, model_version, reason
FROM anomalies FINAL
WHERE trade_time >= fromUnixTimestamp64Milli({from_ms:Int64}) AND trade_time < fromUnixTimestamp64Milli({to_ms:Int64})
ORDER BY trade_time, symbol, trade_id
