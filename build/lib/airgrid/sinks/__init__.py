"""Sinks: the SQL projection and the Prometheus metrics."""
