"""The request path itself (pipeline) and what one generation of settings built for it (runtime)."""
