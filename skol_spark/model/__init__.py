"""The model bundle and its rebuild: custom objects, losses, line projection, the per-worker cache.

Runs on executors and on the driver; imports nothing from the driver-side packages."""
