"""The PyFlink job and everything it runs: parsing, per-symbol features, detectors, the store.

Math (features/, detectors/) is plain Python, unit-tested without Flink; operators.py only wires
Flink state, timers and side outputs around it; anomaly_job.py assembles the pipeline.
"""
