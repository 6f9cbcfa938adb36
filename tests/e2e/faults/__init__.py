"""Fault injectors that run the real worker with one thing of its world broken."""
