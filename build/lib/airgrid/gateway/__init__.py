"""``airgrid gateway``: HJ 212-2017 stations over TCP in, readings on Kafka out (docs/gateway.md)."""
