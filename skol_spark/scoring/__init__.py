"""Executor side: feature decoding, windowing, the Arrow scoring function.

Imports nothing driver-side (job, store, report, cli, local)."""
