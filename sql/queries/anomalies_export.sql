-- Every column of the anomalies in [{from:DateTime64(3)}, {to:DateTime64(3)}), in time order: the
-- Parquet export. clickhouse-client: append INTO OUTFILE 'anomalies.parquet' FORMAT Parquet;
-- embedded: python -m flink_jobs.query anomalies_export --param ... --parquet anomalies.parquet
SELECT * EXCEPT detected_at
FROM anomalies FINAL
WHERE trade_time >= {from:DateTime64(3)} AND trade_time < {to:DateTime64(3)}
ORDER BY trade_time, symbol, trade_id, method
