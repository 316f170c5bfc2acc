-- The strongest anomalies of one UTC day ({day:Date}; today: today() in SQL, `date -u +%F` in a
-- shell): high severity first, then by how far the score went past its threshold; {limit:UInt32} rows.
SELECT
    trade_time,
    symbol,
    method,
    severity,
    price,
    round(score, 2)                                              AS score,
    round(if_score, 3)                                           AS if_score,
    round(price_change_pct, 3)                                   AS price_change_pct,
    model_version,
    reason
FROM anomalies FINAL
WHERE trade_time >= toDateTime64({day:Date}, 3, 'UTC') AND trade_time < toDateTime64({day:Date} + 1, 3, 'UTC')
ORDER BY indexOf(['high', 'medium', 'low'], severity), abs(score) / greatest(abs(threshold), 1e-9) DESC, trade_time
LIMIT {limit:UInt32}
