"""Kafka plumbing below the stages: the topic catalogue, client options, read-back, the local broker."""
