"""What guard tells operators: metrics, the access log, the admin application and its debug pages,
and merging the figures of `--workers`."""
