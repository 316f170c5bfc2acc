-- The {limit:UInt32} most severe anomalies: severity first, then the strongest z-score of their kind
-- (see anomaly_counts_by_kind.sql), newest first among equals.
SELECT
    trade_time,
    symbol,
    method,
    multiIf(abs(z_return) >= greatest(volume_z, rate_z, 0), 'return', volume_z >= rate_z, 'volume', 'rate') AS kind,
    severity,
    round(multiIf(abs(z_return) >= greatest(volume_z, rate_z, 0), z_return, volume_z >= rate_z, volume_z, rate_z), 2) AS z_score,
    round(if_score, 4) AS if_score,
    model_version,
    price,
    reason
FROM anomalies FINAL
ORDER BY multiIf(severity = 'high', 3, severity = 'medium', 2, 1) DESC, abs(z_score) DESC, trade_time DESC, symbol, method
LIMIT {limit:UInt32}
