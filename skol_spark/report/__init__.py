"""Run reports: metrics, charts, HTML, comparisons, the console summary."""
