"""Operator commands: tasks, feedback, replay, reports, schemas and the projection database."""
