"""The api-server's vocabulary, shared by every stage: errors as Kubernetes Status, the caller's
Identity, and the RequestInfo a request classifies to. Pure."""
