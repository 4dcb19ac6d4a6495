"""Shared helpers of the library: file I/O (``io``) and the measurement library (``benchmark``)."""
