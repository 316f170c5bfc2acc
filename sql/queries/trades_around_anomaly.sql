-- The trades of one anomaly's symbol from {seconds:UInt32} seconds before to as long after it
-- ({symbol:String}, {trade_id:UInt64}), with the features they were scored against; the
-- anomalous trade is marked, with the methods that flagged it.
WITH (
    SELECT min(trade_time) FROM anomalies FINAL WHERE symbol = {symbol:String} AND trade_id = {trade_id:UInt64}
) AS anomaly_time
SELECT
    t.trade_time                                AS trade_time,
    t.trade_id                                  AS trade_id,
    t.price                                     AS price,
    t.qty                                       AS qty,
    if(t.is_buyer_maker, 'sell', 'buy')         AS taker,
    round(t.z_return, 2)                        AS z_return,
    round(t.if_score, 3)                        AS if_score,
    t.trade_id = {trade_id:UInt64}              AS is_anomaly,
    (
        SELECT arrayStringConcat(groupArray(method), ',') FROM anomalies FINAL
        WHERE symbol = {symbol:String} AND trade_id = {trade_id:UInt64}
    )                                           AS methods_of_anomaly
FROM trades AS t FINAL
WHERE t.symbol = {symbol:String}
  AND t.trade_time >= anomaly_time - toIntervalSecond({seconds:UInt32})
  AND t.trade_time <= anomaly_time + toIntervalSecond({seconds:UInt32})
ORDER BY t.trade_time, t.trade_id
