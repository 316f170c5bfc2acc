"""Alerts: anomalies after cooldown -> Telegram and Slack.

- message.py   what an alert says (Alert, from an Anomaly) and how each channel renders it
- policy.py    which alerts go out: method and severity filter, per-symbol cooldown, global rate limit
- channels.py  the Telegram Bot API and Slack incoming-webhook clients, and retries with backoff
- sender.py    a bounded queue and one sender thread, so delivery never runs on the record path
- sink.py      the Flink operator that wires them into the job
- preview.py   a dry run of the policy over the stored anomalies (python -m flink_jobs.alerts.preview)

Everything but sink.py is plain Python, tested without Flink (tests/test_alert_*.py).
"""
