"""Detectors: each turns a trade's features into an Anomaly or None. Plain Python, no Flink."""
