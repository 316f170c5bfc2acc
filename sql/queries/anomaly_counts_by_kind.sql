-- Anomalies per method and kind. kind = the z-score signal that stood out most, chosen as the
-- z-score method chooses it (flink_jobs/detectors/zscore.py, score): |return z| if it is at least
-- the volume and rate z-scores (those count only upwards), else the larger of volume and rate.
-- For zscore and combined that is the signal that fired; for iforest it may be below the threshold.
-- The same expression is in the anomaly feed dashboard; report/views.py has it in Python.
SELECT
    method,
    multiIf(abs(z_return) >= greatest(volume_z, rate_z, 0), 'return', volume_z >= rate_z, 'volume', 'rate') AS kind,
    count() AS anomalies
FROM anomalies FINAL
GROUP BY method, kind
ORDER BY method, kind
