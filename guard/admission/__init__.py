"""The admit step: match a request to its tenant's rule, price it, take tokens from its bucket,
hold a seat of its priority level (fair queues), and the adaptive limit of a cluster."""
