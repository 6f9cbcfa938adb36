"""The ``airgrid`` command."""
