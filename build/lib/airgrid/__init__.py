"""airgrid: event-driven air-quality alarms for grid-based environmental supervision."""

__version__ = "0.1.0"
