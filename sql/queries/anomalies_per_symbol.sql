-- Anomalies per symbol and method, with the strongest score seen.
SELECT
    symbol,
    method,
    count()                     AS anomalies,
    round(max(abs(score)), 3)   AS max_abs_score
FROM anomalies FINAL
GROUP BY symbol, method
ORDER BY symbol, method
