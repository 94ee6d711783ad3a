"""Benchmarks of guard against its peers (direct, `kubectl proxy`, nginx, haproxy): throughput and
latency under wrk, memory with idle watches and during a large LIST, and the in-process admission
cost. Run with `python -m bench` (`make bench`). It reports ratios measured in one run; it must
never be part of the timed test suite, and never touches anything beyond loopback.
"""
