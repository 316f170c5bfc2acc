-- Price around one anomaly: the {interval_s:UInt32}-second bars of its symbol from {minutes:UInt32}
-- minutes before to as long after the trade ({symbol:String}, {trade_id:UInt64}); the bar holding
-- the anomalous trade is marked.
WITH (
    SELECT min(trade_time) FROM anomalies FINAL WHERE symbol = {symbol:String} AND trade_id = {trade_id:UInt64}
) AS anomaly_time
SELECT
    window_start,
    open, high, low, close,
    round(vwap, 8)                                          AS vwap,
    volume,
    trade_count,
    round(buy_volume / volume, 3)                           AS taker_buy_share,
    anomaly_time >= window_start
        AND anomaly_time < window_start + toIntervalSecond({interval_s:UInt32}) AS holds_anomaly
FROM bars FINAL
WHERE symbol = {symbol:String} AND interval_s = {interval_s:UInt32}
  AND window_start >= anomaly_time - toIntervalMinute({minutes:UInt32})
  AND window_start <= anomaly_time + toIntervalMinute({minutes:UInt32})
ORDER BY window_start
