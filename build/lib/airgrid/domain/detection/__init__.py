"""Detection in event time: per-station state, the rule engine, episodes and the fast AQI path."""
