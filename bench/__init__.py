"""Diaspora benchmarks: every figure is a ratio against raw nats-py (or numpy) in the same run."""
