-- Which bar intervals (seconds) the store holds for each symbol; the report draws prices from them.
SELECT symbol, groupArray(DISTINCT interval_s) AS intervals
FROM bars
GROUP BY symbol
