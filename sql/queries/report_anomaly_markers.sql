-- Every anomaly of one symbol at its trade price, for the markers on the price chart.
SELECT trade_time, price, method
FROM anomalies FINAL
WHERE symbol = {symbol:String}
ORDER BY trade_time, method
