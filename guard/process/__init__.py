"""One guard process: building everything from settings (wiring), showing it (observing), the
listeners, reload and drain (server), and `--workers` (workers)."""
