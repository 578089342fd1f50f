"""Uplinks: the bus joined to brokers by routes, with a loop guard and an outbox."""
