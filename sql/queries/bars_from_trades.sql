-- OHLCV bars of {interval_s:UInt32} seconds recomputed from the raw trades of one symbol in
-- [{from:DateTime64(3)}, {to:DateTime64(3)}): the same definition as the job's bars (open and close by
-- trade time, then trade id). Checks the job's bars, or repairs a bar that a late trade missed:
-- INSERT INTO bars (symbol, interval_s, window_start, open, ...) SELECT ... replaces it by key.
SELECT
    symbol,
    {interval_s:UInt32}                                                   AS interval_s,
    toDateTime64(toStartOfInterval(trade_time, toIntervalSecond({interval_s:UInt32})), 3, 'UTC') AS window_start,
    argMin(price, (trade_time, trade_id))                                 AS open,
    max(price)                                                            AS high,
    min(price)                                                            AS low,
    argMax(price, (trade_time, trade_id))                                 AS close,
    sum(qty)                                                              AS volume,
    sum(quote_qty)                                                        AS quote_volume,
    quote_volume / volume                                                 AS vwap,
    toUInt32(count())                                                     AS trade_count,
    sumIf(qty, NOT is_buyer_maker)                                        AS buy_volume,
    sumIf(qty, is_buyer_maker)                                            AS sell_volume
FROM trades FINAL
WHERE symbol = {symbol:String} AND trade_time >= {from:DateTime64(3)} AND trade_time < {to:DateTime64(3)}
GROUP BY symbol, window_start
ORDER BY window_start
