-- The anomalies of one symbol within a trade id range (one backtest's input) that were detected
-- since a moment of the store's clock (the backtest's start), in time order.
SELECT
    symbol, trade_id, toUnixTimestamp64Milli(trade_time) AS event_time, method, severity,
    zscore, if_score, model_version, price, price_change_pct, robust_z_return,
    vwap_deviation_pct, volume_spike_ratio, price_velocity_pct_s, trade_rate_burst,
    buy_sell_imbalance, time_gap_sec, z_price, reason
FROM anomalies FINAL
WHERE symbol = {symbol:String} AND trade_id BETWEEN {first_id:UInt64} AND {last_id:UInt64}
  AND toUnixTimestamp64Milli(detected_at) >= {since_ms:Int64}
ORDER BY trade_time, trade_id, method
