-- Close (last trade price) per {bucket_s:UInt32} seconds of one symbol (t: epoch seconds), from its trades.
SELECT toUnixTimestamp(toStartOfInterval(trade_time, toIntervalSecond({bucket_s:UInt32}))) AS t, argMax(price, (trade_time, trade_id)) AS close
FROM trades FINAL
WHERE symbol = {symbol:String}
GROUP BY t
ORDER BY t
