"""Per-symbol features: plain Python, shared by the streaming job and (later) model training."""
