-- Anomalies per symbol, hour and method in [{from:DateTime64(3)}, {to:DateTime64(3)}), with the hour's
-- trades (from the 1-minute bars: 60 rows an hour instead of every trade) and the rate per 1,000 trades.
WITH hourly_trades AS
(
    SELECT symbol, toDateTime64(toStartOfHour(window_start), 0, 'UTC') AS hour, sum(trade_count) AS trades
    FROM bars FINAL
    WHERE interval_s = 60 AND window_start >= {from:DateTime64(3)} AND window_start < {to:DateTime64(3)}
    GROUP BY symbol, hour
),
hourly_anomalies AS
(
    SELECT symbol, toDateTime64(toStartOfHour(trade_time), 0, 'UTC') AS hour, method, count() AS anomalies
    FROM anomalies FINAL
    WHERE trade_time >= {from:DateTime64(3)} AND trade_time < {to:DateTime64(3)}
    GROUP BY symbol, hour, method
)
SELECT
    t.symbol                                           AS symbol,
    t.hour                                             AS hour,
    m.method                                           AS method,
    t.trades                                           AS trades,
    ifNull(a.anomalies, 0)                             AS anomalies,
    round(1000 * ifNull(a.anomalies, 0) / t.trades, 3) AS per_1000_trades
FROM hourly_trades AS t
CROSS JOIN (SELECT DISTINCT method FROM anomalies) AS m
LEFT JOIN hourly_anomalies AS a ON a.symbol = t.symbol AND a.hour = t.hour AND a.method = m.method
ORDER BY symbol, hour, method
SETTINGS join_use_nulls = 1
