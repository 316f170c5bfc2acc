"""The report for the embedded default: the dashboards' views from the store as PNG charts and one
self-contained HTML page, for when no Grafana runs (python -m flink_jobs.report)."""
