-- Close per {bucket_s:UInt32} seconds of one symbol (t: epoch seconds), from its {interval_s:UInt32} bars.
SELECT toUnixTimestamp(toStartOfInterval(window_start, toIntervalSecond({bucket_s:UInt32}))) AS t, argMax(close, window_start) AS close
FROM bars FINAL
WHERE symbol = {symbol:String} AND interval_s = {interval_s:UInt32}
GROUP BY t
ORDER BY t
