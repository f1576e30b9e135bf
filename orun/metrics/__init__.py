"""Prometheus metrics: the counters the proxy and the event bus keep, exported at
`/_orun/metrics` (orun/metrics/endpoint.py)."""
