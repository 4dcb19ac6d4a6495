"""Measurement: the overhead benchmark of one config (``benchmark``, ``tools/benchmark.py``) and
the CPU inference paths side by side (``inference_paths``)."""
