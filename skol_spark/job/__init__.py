"""The batch job on the driver: config, the run's phases, validation, sinks, run manifest, session."""
