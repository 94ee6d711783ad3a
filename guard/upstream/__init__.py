"""A cluster's api-server endpoints, guard's credential to them, the exchange that forwards a
request, active health probes and the reviews guard asks of the cluster."""
