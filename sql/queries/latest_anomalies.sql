-- The most recent anomalies, newest first; {limit:UInt32} rows.
SELECT trade_time, symbol, method, severity, round(price, 8) AS price, round(score, 1) AS score, reason
FROM anomalies FINAL
ORDER BY trade_time DESC
LIMIT {limit:UInt32}
