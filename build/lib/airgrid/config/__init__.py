"""Settings and shipped data files (grid directory, rules, escalation policy)."""
