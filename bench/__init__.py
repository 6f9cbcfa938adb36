"""Benchmarks of airgrid on a real local broker: scripts that print figures, never timed tests.

Run ``python -m bench.run [--readings N] [--stations N] [--quick]``.
"""
