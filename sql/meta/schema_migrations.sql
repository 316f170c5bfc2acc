-- Which sql/NNN_*.sql files a store has had applied, with the checksum of their statements
-- (python -m flink_jobs.migrate). One row per file; a re-recorded file collapses on its name.
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version     String,
    checksum    String,
    statements  UInt32,
    applied_at  DateTime64(3, 'UTC')  DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
