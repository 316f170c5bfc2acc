-- Least-privilege server users (python -m flink_jobs.migrate --users; ClickHouse server only:
-- chDB has no access management). {{name}} placeholders are filled at apply time: {{database}}
-- with CLICKHOUSE_DATABASE, {{*_password_sha256}} with the SHA-256 (hex) of CLICKHOUSE_JOB_PASSWORD
-- and CLICKHOUSE_GRAFANA_PASSWORD, so no password is in this file, in the statements sent, or in logs.
-- Safe to repeat: roles and profiles are created if missing; users are replaced, which sets
-- the password from the environment again (rotation) and re-grants their role below.

-- The Flink job writes its four tables and reads nothing (STORE_MIGRATE_ON_START=false: an
-- administrator runs the migrations).
CREATE ROLE IF NOT EXISTS crypto_writer;
GRANT INSERT ON {{database}}.trades TO crypto_writer;
GRANT INSERT ON {{database}}.anomalies TO crypto_writer;
GRANT INSERT ON {{database}}.dead_letters TO crypto_writer;
GRANT INSERT ON {{database}}.bars TO crypto_writer;

-- Grafana reads the database. readonly = 1 forbids writes and DDL and setting changes, except
-- max_execution_time, which the Grafana ClickHouse plugin sets on every query (ClickHouse's and
-- Grafana's docs: prefer this over readonly = 2, which would let a dashboard change any setting).
CREATE ROLE IF NOT EXISTS crypto_reader;
GRANT SELECT ON {{database}}.* TO crypto_reader;
CREATE SETTINGS PROFILE IF NOT EXISTS crypto_grafana_readonly
    SETTINGS readonly = 1, max_execution_time = 60 MAX 300 CHANGEABLE_IN_READONLY, max_result_rows = 1000000;

CREATE USER OR REPLACE crypto_job IDENTIFIED WITH sha256_hash BY '{{job_password_sha256}}'
    DEFAULT DATABASE {{database}};
GRANT crypto_writer TO crypto_job;
ALTER USER crypto_job DEFAULT ROLE crypto_writer;

CREATE USER OR REPLACE crypto_grafana IDENTIFIED WITH sha256_hash BY '{{grafana_password_sha256}}'
    DEFAULT DATABASE {{database}} SETTINGS PROFILE 'crypto_grafana_readonly';
GRANT crypto_reader TO crypto_grafana;
ALTER USER crypto_grafana DEFAULT ROLE crypto_reader
