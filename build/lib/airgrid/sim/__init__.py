"""The station simulator that feeds the worker in the demo and in tests."""
