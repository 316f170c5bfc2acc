-- Trades per symbol with their time span and price range (FINAL: exact after replays).
SELECT
    symbol,
    count()                     AS trades,
    min(trade_time)             AS first_trade,
    max(trade_time)             AS last_trade,
    round(min(price), 8)        AS min_price,
    round(max(price), 8)        AS max_price
FROM trades FINAL
GROUP BY symbol
ORDER BY symbol
