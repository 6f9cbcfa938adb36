"""Pydantic v2 models of every public message and of the state kept in tables."""
