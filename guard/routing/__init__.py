"""Which cluster serves a request (prefix, host, TLS name) and which of its endpoints (circuit
breakers, slow start, least in flight, the fleet's shared view)."""
