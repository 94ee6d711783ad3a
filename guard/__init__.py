"""guard: a rate-limiting, RBAC-aware reverse proxy in front of Kubernetes api-servers."""

__version__ = "0.1.0"
