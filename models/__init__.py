"""Isolation Forest models: training from historical trades, ONNX export, the versioned registry."""
